"""`FastLVISEvaluator`: Detectron2's `LVISEvaluator` with the fast evaluator, Fixed AP and per-class reports.

Same inputs, same `lvis_instances_results.json`, same returned metrics (AP, AP50, AP75, APs, APm, APl, APr, APc,
APf in percent per task) as Detectron2's evaluator with lvis-api; next to them in the output folder it writes
`lvis_per_class.csv`, `lvis_ap_vs_train_images.png` and `lvis_summary.md`. With `fixed_ap` it adds `AP-fixed`
(and `APr-fixed`, `APc-fixed`, `APf-fixed`) to each task's metrics.

With several processes (`shards=True`, the default) no process ever holds every rank's predictions: each rank
streams its results records, as json, into a shard file while it runs inference; at `evaluate()` rank 0 joins the
shards byte for byte into the results json (the one Detectron2 would write from the gathered list) and evaluates that
file. `shards=False` gathers the predictions to rank 0 as Detectron2 does (`comm.gather`). One process: Detectron2's
flow either way.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Sequence, Union

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import LVISEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from lt_detectron.utils.distributed import broadcast_from_main
from lt_detectron.utils.io import atomic_write, host_name, make_temporary, remove_stale_temporaries

from .fast_lvis import FIXED_AP_DEFAULT_K, evaluate_detections
from .inputs import load_detections, load_ground_truth
from .report import format_table, write_reports

__all__ = ["FastLVISEvaluator", "D2_METRICS", "RESULTS_FILE"]

D2_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")  # Detectron2's LVIS metrics
LVIS_MAX_DETS = 300
RESULTS_FILE = "lvis_instances_results.json"  # Detectron2's name; the shards are named after it
_COPY_BLOCK = 16 << 20  # bytes per read when joining the shards


def _temp_file(folder: str, name: str) -> str:
    """A new empty file in `folder` named as `lt_detectron.utils.io.atomic_write` names its temporaries
    (`<name>.<host>.<pid>.<random>.lt-tmp`), so that `remove_stale_temporaries` removes it once its process is gone."""
    os.makedirs(folder, exist_ok=True)
    fd, path = make_temporary(folder, name)
    os.close(fd)
    return path


class _ShardWriter:
    """One rank's results records appended to a json list file as they come, so the rank holds none of them.

    The file reads exactly as `json.dumps` of the whole list would write it (`[` + records joined by ", " + `]`),
    so joined shards are the results file of the gathered list, byte for byte, and `load_detections` takes its
    fast path on them.
    """

    def __init__(self, folder: str, rank: int):
        self.path = _temp_file(folder, f"{RESULTS_FILE}.rank{rank}")
        self.records = 0
        self._file: Optional[IO[bytes]] = open(self.path, "wb")
        self._file.write(b"[")

    def write(self, records: List[dict]) -> None:
        if not records:
            return
        assert self._file is not None, "shard already closed"
        if self.records:
            self._file.write(b", ")
        self._file.write(json.dumps(records)[1:-1].encode("ascii"))  # ensure_ascii: json.dumps writes ASCII only
        self.records += len(records)

    def close(self) -> None:
        """Finish the list and make it durable: rank 0 reads the file only after every rank closed its shard."""
        if self._file is None:
            return
        self._file.write(b"]")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def remove(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


@dataclass
class _ShardInfo:
    """What a rank tells the others at `evaluate()` (small; the records stay in the shard file)."""

    path: Optional[str]  # None: this rank processed no image
    host: str
    images: int
    records: int
    has_instances: bool
    has_segm: bool
    has_proposals: bool


def _join_shards(infos: Sequence[_ShardInfo], out: IO[bytes]) -> None:
    """Write the shards, in rank order, as one json list to `out`, copying their bytes in blocks (no parsing)."""
    missing = [(r, i.host, i.path) for r, i in enumerate(infos) if i.path and not os.path.isfile(i.path)]
    if missing:
        raise FileNotFoundError(
            f"FastLVISEvaluator: rank 0 (host {host_name()}) cannot see the prediction shards of (rank, host, path) "
            f"{missing}. Sharded evaluation needs a folder every process can read: set OUTPUT_DIR (the shards go "
            f"into its inference folder) to a shared file system, or set TEST.LT_EVAL_SHARDS False to gather the "
            f"predictions to rank 0 instead."
        )
    out.write(b"[")
    first = True
    for rank, info in enumerate(infos):
        if not info.path:
            continue
        with open(info.path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            head = src.read(1)
            src.seek(max(size - 1, 0))
            tail = src.read(1)
            if size < 2 or head != b"[" or tail != b"]":
                raise ValueError(
                    f"FastLVISEvaluator: the prediction shard of rank {rank}, {info.path!r}, is not a complete json "
                    f"list ({size} bytes); another program changed it, or its file system lost the end. Re-run the "
                    f"evaluation."
                )
            left = size - 2
            if left == 0:
                continue
            if not first:
                out.write(b", ")
            first = False
            src.seek(1)
            while left:
                block = src.read(min(left, _COPY_BLOCK))
                if not block:
                    raise ValueError(f"FastLVISEvaluator: the prediction shard {info.path!r} shrank while read")
                out.write(block)
                left -= len(block)
    out.write(b"]")


class FastLVISEvaluator(LVISEvaluator):
    """Drop-in for `detectron2.evaluation.LVISEvaluator` (see the module doc).

    Args:
        dataset_name: a registered LVIS-format dataset (its metadata's `json_file` is the ground truth).
        tasks: "bbox" and/or "segm"; None = the tasks the predictions support.
        distributed: evaluate the predictions of all processes on the main one (as Detectron2).
        output_dir: where the results json and the reports are written; None = nowhere.
        max_dets_per_image: the per-image cap of standard AP (LVIS: 300).
        fixed_ap: also compute Fixed AP over the top-K detections per class (TEST.LT_FIXED_AP).
        fixed_ap_k: K of Fixed AP (TEST.LT_FIXED_AP_K).
        workers: evaluation processes; None = the CPUs (TEST.LT_EVAL_WORKERS, 0 = None).
        train_datasets: registered training datasets whose per-class image/instance counts go into the CSV and the
            plot; empty (default) = the counts the ground-truth categories store.
        shards: with several processes, stream each rank's predictions to a shard file and evaluate the joined shards
            on rank 0 (TEST.LT_EVAL_SHARDS); False = gather them to rank 0 in memory (Detectron2's `comm.gather`).
            The shards are written to `output_dir` (the system's temporary folder when it is None), which every
            process must be able to read; they are removed once rank 0 has joined them. Unlike the gather path,
            the sharded one does not write Detectron2's `instances_predictions.pth` (a second, pickled copy of all
            predictions in one process).
    """

    def __init__(
        self,
        dataset_name: str,
        tasks: Optional[Sequence[str]] = None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: int = LVIS_MAX_DETS,
        fixed_ap: bool = False,
        fixed_ap_k: int = FIXED_AP_DEFAULT_K,
        workers: Optional[int] = None,
        train_datasets: Sequence[str] = (),
        shards: bool = True,
    ):
        self._logger = logging.getLogger(__name__)
        self._tasks = tasks
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets_per_image = max_dets_per_image
        self._fixed_ap = fixed_ap
        self._fixed_ap_k = fixed_ap_k
        self._workers = workers
        self._train_datasets = tuple(train_datasets)
        self._shards = shards
        self._sharded = False  # set by reset(): shards asked for, distributed, and more than one process
        self._shard: Optional[_ShardWriter] = None
        self._predictions: List[dict] = []
        self._images = 0  # this rank's, on the sharded path
        self._has_instances = self._has_segm = False
        self._cpu_device = torch.device("cpu")
        self._metadata = MetadataCatalog.get(dataset_name)
        self._json_file = PathManager.get_local_path(self._metadata.json_file)
        self._gt = load_ground_truth(self._json_file)
        self._do_evaluation = sum(len(a) for a in self._gt.anns_by_cat) > 0
        self._lvis_api_cache = None
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        # contiguous class index -> dataset category id, as Detectron2's _eval_predictions maps them (None: + 1)
        self._category_ids: Optional[Dict[int, int]] = (
            {v: k for k, v in mapping.items()} if mapping is not None else None
        )

    @property
    def _lvis_api(self):  # used by Detectron2's proposal evaluation only; loaded on first use
        if self._lvis_api_cache is None:
            from lvis import LVIS

            self._lvis_api_cache = LVIS(self._json_file)
        return self._lvis_api_cache

    def _shard_folder(self) -> str:
        return self._output_dir or tempfile.gettempdir()

    def _discard_shard(self) -> None:
        if self._shard is not None:
            self._shard.remove()
            self._shard = None

    def reset(self) -> None:
        self._discard_shard()  # an evaluation begun and not finished
        self._predictions = []
        self._sharded = self._shards and self._distributed and comm.get_world_size() > 1
        self._images = 0
        self._has_instances = self._has_segm = False
        if self._sharded:
            # Shards of a killed run are temporaries of a dead process: removed here. (Rank 0 joins only the shards
            # the ranks of this run name at evaluate(), so one that is left, on another host, is never read.)
            remove_stale_temporaries(self._shard_folder())

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        if not self._sharded:
            super().process(inputs, outputs)
            return
        if self._shard is None:
            self._shard = _ShardWriter(self._shard_folder(), comm.get_rank())
        for input_, output in zip(inputs, outputs):
            self._images += 1
            if "instances" in output:
                self._has_instances = True
                records = instances_to_coco_json(output["instances"].to(self._cpu_device), input_["image_id"])
                self._to_dataset_ids(records)
                self._has_segm = self._has_segm or any("segmentation" in r for r in records)
                self._shard.write(records)
            if "proposals" in output:  # box-proposal recall: Detectron2's in-memory path (see evaluate)
                proposals = output["proposals"].to(self._cpu_device)
                self._predictions.append({"image_id": input_["image_id"], "proposals": proposals})

    def _to_dataset_ids(self, records: List[dict]) -> None:
        """Contiguous class indices -> the dataset's category ids, in place (Detectron2's _eval_predictions)."""
        if self._category_ids is not None:
            for r in records:
                r["category_id"] = self._category_ids[r["category_id"]]
        else:
            for r in records:
                r["category_id"] += 1

    def evaluate(self) -> Optional[Dict[str, Any]]:
        if not self._sharded:
            return super().evaluate()
        if self._shard is not None:
            self._shard.close()
        info = _ShardInfo(
            path=self._shard.path if self._shard is not None else None,
            host=host_name(),
            images=self._images,
            records=self._shard.records if self._shard is not None else 0,
            has_instances=self._has_instances,
            has_segm=self._has_segm,
            has_proposals=bool(self._predictions),
        )
        try:
            infos = comm.all_gather(info)  # also the synchronisation point: every shard is closed after it
            results_file = broadcast_from_main(lambda: self._join(infos))  # a failure on rank 0 is raised everywhere
        finally:
            self._discard_shard()  # each rank its own (joined, or failed); rank 0 may sit on another host
        proposals: List[dict] = []
        if any(i.has_proposals for i in infos):
            proposals = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
        self._predictions = []
        if not comm.is_main_process():
            return None
        if results_file is None:
            self._logger.warning("[LVISEvaluator] Did not receive valid predictions.")
            return {}
        try:
            self._results = OrderedDict()
            if proposals:
                self._eval_box_proposals(proposals)
            if any(i.has_instances for i in infos):
                tasks = self._tasks or (("bbox", "segm") if any(i.has_segm for i in infos) else ("bbox",))
                self._evaluate_results(results_file, tasks, sum(i.records for i in infos))
            return copy.deepcopy(self._results)
        finally:
            if not self._output_dir:
                os.remove(results_file)  # the detections were read into memory; the temporary json is not kept

    def _join(self, infos: Sequence[_ShardInfo]) -> Optional[str]:
        """Rank 0: the shards joined into the results json; `OUTPUT_DIR/lvis_instances_results.json` when there is an
        output folder (written atomically), else a temporary file that evaluate() removes. None (and no file, as
        Detectron2) when no rank processed an image."""
        if sum(i.images for i in infos) == 0:
            return None
        if self._output_dir:
            path = os.path.join(self._output_dir, RESULTS_FILE)
            self._logger.info(f"Joining the prediction shards of {len(infos)} processes into {path}")
            return atomic_write(path, lambda f: _join_shards(infos, f))
        path = _temp_file(tempfile.gettempdir(), RESULTS_FILE)
        try:
            with open(path, "wb") as f:
                _join_shards(infos, f)
        except BaseException:
            os.remove(path)
            raise
        return path

    def _train_counts(self):
        if not self._train_datasets:
            return None, None
        try:
            from lt_detectron.data import class_counts

            images = class_counts(self._train_datasets, source="image_count")
            instances = class_counts(self._train_datasets, source="instance_count")
        except Exception as err:  # the CSV falls back to the stored counts; evaluation goes on
            self._logger.warning(f"training counts of {self._train_datasets} unavailable ({err}); using stored ones")
            return None, None
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        contiguous = [mapping[c] if mapping else int(c) - 1 for c in self._gt.cat_ids.tolist()]
        if len(images) != len(contiguous) or max(contiguous) >= len(images):
            return None, None
        return images[contiguous], instances[contiguous]

    def _eval_predictions(self, predictions):
        """The gather path and one process: Detectron2's list of per-image predictions."""
        self._logger.info("Preparing results in the LVIS format ...")
        lvis_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(lvis_results)
        self._to_dataset_ids(lvis_results)
        if self._output_dir:
            file_path = os.path.join(self._output_dir, RESULTS_FILE)
            self._logger.info(f"Saving results to {file_path}")
            with PathManager.open(file_path, "w") as f:
                f.write(json.dumps(lvis_results))
        self._evaluate_results(lvis_results, tasks, len(lvis_results))

    def _evaluate_results(self, source: Union[str, List[dict]], tasks: Sequence[str], count: int) -> None:
        """Fill self._results from the results records (a list, or a json file of them; `count` records)."""
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        if not count:
            self._logger.warning("No predictions from the model!")
            for task in sorted(tasks):
                self._results[task] = {m: float("nan") for m in D2_METRICS}
            return
        self._logger.info("Evaluating predictions with the fast LVIS evaluator ...")
        dets = load_detections(source, self._gt, need_bbox="bbox" in tasks, need_segm="segm" in tasks)
        results, fixed = OrderedDict(), OrderedDict()
        for task in sorted(tasks):
            results[task] = evaluate_detections(
                self._gt, dets, task, max_dets_per_image=self._max_dets_per_image, workers=self._workers
            )
            metrics = {m: float(results[task].summary[m] * 100) for m in D2_METRICS}
            if self._fixed_ap:
                fixed[task] = evaluate_detections(
                    self._gt, dets, task, fixed_ap=True, fixed_ap_k=self._fixed_ap_k, workers=self._workers
                )
                for m in ("AP", "APr", "APc", "APf"):
                    metrics[f"{m}-fixed"] = float(fixed[task].summary[m] * 100)
            self._results[task] = metrics
        self._logger.info("LVIS results:\n" + format_table(results, fixed))
        if self._output_dir:
            images, instances = self._train_counts()
            paths = write_reports(self._output_dir, self._gt, results, fixed, images, instances)
            self._logger.info(f"Per-class AP: {paths.get('csv')}; plot: {paths.get('png')}")
