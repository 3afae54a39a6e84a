"""`FastLVISEvaluator`: Detectron2's `LVISEvaluator` with the fast evaluator, Fixed AP and per-class reports.

Same inputs, same `lvis_instances_results.json`, same returned metrics (AP, AP50, AP75, APs, APm, APl, APr, APc,
APf in percent per task) as Detectron2's evaluator with lvis-api; next to them in the output folder it writes
`lvis_per_class.csv`, `lvis_ap_vs_train_images.png` and `lvis_summary.md`. With `fixed_ap` it adds `AP-fixed`
(and `APr-fixed`, `APc-fixed`, `APf-fixed`) to each task's metrics.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import LVISEvaluator
from detectron2.utils.file_io import PathManager

from .fast_lvis import FIXED_AP_DEFAULT_K, evaluate_detections
from .inputs import load_detections, load_ground_truth
from .report import format_table, write_reports

__all__ = ["FastLVISEvaluator", "D2_METRICS"]

D2_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")  # Detectron2's LVIS metrics
LVIS_MAX_DETS = 300


class FastLVISEvaluator(LVISEvaluator):
    """Drop-in for `detectron2.evaluation.LVISEvaluator` (see the module doc).

    Args:
        dataset_name: a registered LVIS-format dataset (its metadata's `json_file` is the ground truth).
        tasks: "bbox" and/or "segm"; None = the tasks the predictions support.
        distributed: gather the predictions of all processes and evaluate on the main one (as Detectron2).
        output_dir: where the results json and the reports are written; None = nowhere.
        max_dets_per_image: the per-image cap of standard AP (LVIS: 300).
        fixed_ap: also compute Fixed AP over the top-K detections per class (TEST.LT_FIXED_AP).
        fixed_ap_k: K of Fixed AP (TEST.LT_FIXED_AP_K).
        workers: evaluation processes; None = the CPUs (TEST.LT_EVAL_WORKERS, 0 = None).
        train_datasets: registered training datasets whose per-class image/instance counts go into the CSV and the
            plot; empty (default) = the counts the ground-truth categories store.
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
        self._cpu_device = torch.device("cpu")
        self._metadata = MetadataCatalog.get(dataset_name)
        self._json_file = PathManager.get_local_path(self._metadata.json_file)
        self._gt = load_ground_truth(self._json_file)
        self._do_evaluation = sum(len(a) for a in self._gt.anns_by_cat) > 0
        self._lvis_api_cache = None

    @property
    def _lvis_api(self):  # used by Detectron2's proposal evaluation only; loaded on first use
        if self._lvis_api_cache is None:
            from lvis import LVIS

            self._lvis_api_cache = LVIS(self._json_file)
        return self._lvis_api_cache

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
        self._logger.info("Preparing results in the LVIS format ...")
        lvis_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(lvis_results)
        if hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
            reverse = {v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()}
            for result in lvis_results:
                result["category_id"] = reverse[result["category_id"]]
        else:
            for result in lvis_results:
                result["category_id"] += 1
        if self._output_dir:
            file_path = os.path.join(self._output_dir, "lvis_instances_results.json")
            self._logger.info(f"Saving results to {file_path}")
            with PathManager.open(file_path, "w") as f:
                f.write(json.dumps(lvis_results))
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        if not lvis_results:
            self._logger.warning("No predictions from the model!")
            for task in sorted(tasks):
                self._results[task] = {m: float("nan") for m in D2_METRICS}
            return
        self._logger.info("Evaluating predictions with the fast LVIS evaluator ...")
        dets = load_detections(lvis_results, self._gt, need_bbox="bbox" in tasks, need_segm="segm" in tasks)
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
