"""Sharded multi-process evaluation (FastLVISEvaluator, TEST.LT_EVAL_SHARDS): two CPU processes (gloo), one launch.

Each rank evaluates its half of model-like predictions on a tiny lt_shapes, through the sharded path (with and without
an output folder), the gather path and Detectron2's LVISEvaluator; a rank without images and a shard rank 0 cannot
see are run too. Each rank saves what it saw (metrics, the collectives' payload sizes, the files in the shard
folders); the assertions run here, in the pytest process, against one process holding every prediction.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip("detectron2")
import torch.distributed as dist  # noqa: E402
from detectron2.evaluation import LVISEvaluator  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from test_eval_detectron2 import _predictions, _run  # noqa: E402

from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.data.lt_shapes import VAL_JSON  # noqa: E402
from lt_detectron.engine.distributed import launch  # noqa: E402
from lt_detectron.evaluation.detectron2_evaluator import D2_METRICS, RESULTS_FILE, FastLVISEvaluator  # noqa: E402
from lt_detectron.utils.io import TEMP_SUFFIX, host_name  # noqa: E402


class _PayloadLog:
    """Pickled sizes of the objects this rank hands to the object collectives (how much a gather would move)."""

    def __init__(self):
        self.sizes: list = []
        self._orig = (comm.all_gather, comm.gather, dist.broadcast_object_list)

        def wrap(fn, size_of):
            def logged(*args, **kwargs):
                self.sizes.append(size_of(*args, **kwargs))
                return fn(*args, **kwargs)

            return logged

        comm.all_gather = wrap(comm.all_gather, lambda data, *a, **k: len(pickle.dumps(data)))
        comm.gather = wrap(comm.gather, lambda data, *a, **k: len(pickle.dumps(data)))
        dist.broadcast_object_list = wrap(dist.broadcast_object_list, lambda objs, *a, **k: len(pickle.dumps(objs)))

    def take(self) -> list:
        sizes, self.sizes = self.sizes, []
        return sizes


def _shard_files(folder: str) -> list:
    return (
        sorted(f for f in os.listdir(folder) if f.startswith(RESULTS_FILE + ".rank")) if os.path.isdir(folder) else []
    )


def _evaluate(evaluator, inputs, outputs, before_evaluate=None):
    evaluator.reset()
    if inputs:
        evaluator.process(inputs, outputs)
    if before_evaluate is not None:
        before_evaluate()
    return evaluator.evaluate()


def _worker(root: str, out: str) -> None:
    register_lt_shapes(root)
    rank = comm.get_rank()
    inputs, outputs = _predictions(root)
    half = (len(inputs) + 1) // 2  # contiguous halves in rank order, as Detectron2's InferenceSampler splits
    mine = slice(0, half) if rank == 0 else slice(half, None)
    inputs, outputs = inputs[mine], outputs[mine]
    log = _PayloadLog()
    held: dict = {}

    folder = os.path.join(out, "sharded")
    seen: dict = {}
    evaluator = FastLVISEvaluator("lt_shapes_val", output_dir=folder, workers=1)
    held["sharded"] = _evaluate(
        evaluator,
        inputs,
        outputs,
        lambda: seen.update(own=os.path.basename(evaluator._shard.path), before=_shard_files(folder)),
    )
    held["sharded_own_shard"] = seen["own"]
    held["sharded_shards_before_evaluate"] = seen["before"]
    held["sharded_payloads"] = log.take()
    comm.synchronize()  # rank 0's listing after every rank has removed its shard
    held["sharded_shards_after"] = _shard_files(folder)

    evaluator = FastLVISEvaluator("lt_shapes_val", output_dir=os.path.join(out, "gather"), workers=1, shards=False)
    held["gather"] = _evaluate(evaluator, inputs, outputs)
    held["gather_payloads"] = log.take()

    evaluator = FastLVISEvaluator("lt_shapes_val", output_dir=None, workers=1)  # shards in the temporary folder
    held["no_output_dir"] = _evaluate(evaluator, inputs, outputs)
    log.take()
    comm.synchronize()
    held["temp_files_after"] = sorted(os.listdir(os.environ["TMPDIR"]))

    ref = LVISEvaluator("lt_shapes_val", output_dir=os.path.join(out, "lvis_api"), max_dets_per_image=300)
    held["lvis_api"] = _evaluate(ref, inputs, outputs)

    evaluator = FastLVISEvaluator("lt_shapes_val", output_dir=os.path.join(out, "rank0_only"), workers=1)
    all_inputs, all_outputs = _predictions(root)
    held["rank0_only"] = _evaluate(evaluator, *((all_inputs, all_outputs) if rank == 0 else ([], [])))

    # Rank 1's shard vanishes before evaluate (a folder rank 0 cannot see): every rank raises, none waits.
    evaluator = FastLVISEvaluator("lt_shapes_val", output_dir=os.path.join(out, "lost"), workers=1)

    def lose_shard():
        if rank == 1:
            os.remove(evaluator._shard.path)

    try:
        _evaluate(evaluator, inputs, outputs, lose_shard)
        held["lost_error"] = None
    except FileNotFoundError as err:
        held["lost_error"] = str(err)
    comm.synchronize()
    held["lost_shards_after"] = _shard_files(os.path.join(out, "lost"))
    torch.save(held, os.path.join(out, f"rank{rank}.pt"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_stale(path: str, gt_json: str) -> None:
    """A results list that would lower AP if it were read: a score-1.0 box beside every object, of its class."""
    with open(gt_json) as f:
        gt = json.load(f)
    records = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [0.0, 0.0, 3.0, 3.0], "score": 1.0}
        for a in gt["annotations"]
    ]
    with open(path, "w") as f:
        json.dump(records, f)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_shapes_sharded")
    generate_lt_shapes(str(root), seed=1, overwrite=True, num_train_images=16, num_val_images=10)
    register_lt_shapes(str(root))
    yield str(root)
    register_lt_shapes()  # back to the default root for other tests


@pytest.fixture(scope="module")
def runs(tiny_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sharded_eval"))
    folder = os.path.join(out, "sharded")
    os.makedirs(folder)
    # Shards a killed run left: rank 1's of a dead process on this host (removed at reset), and two that must not be
    # removed nor read: one of a live process (this one) and one of another host (a shared file system).
    stale = {
        "dead": f"{RESULTS_FILE}.rank1.{host_name()}.{_dead_pid()}.deadbeef{TEMP_SUFFIX}",
        "live": f"{RESULTS_FILE}.rank1.{host_name()}.{os.getpid()}.livebeef{TEMP_SUFFIX}",
        "other_host": f"{RESULTS_FILE}.rank0.otherhost.1.hostbeef{TEMP_SUFFIX}",
    }
    for name in stale.values():
        _write_stale(os.path.join(folder, name), os.path.join(tiny_root, VAL_JSON))
    temp = os.path.join(out, "tmp")
    os.makedirs(temp)
    old_tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = temp  # the spawned ranks' tempfile.gettempdir()
    try:
        launch(_worker, 2, device="cpu", args=(tiny_root, out))
    finally:
        if old_tmpdir is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old_tmpdir
    held = [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(2)]
    return {"out": out, "held": held, "stale": stale}


@pytest.fixture(scope="module")
def one_process(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    inputs, outputs = _predictions(tiny_root)
    evaluator = FastLVISEvaluator("lt_shapes_val", distributed=False, output_dir=str(out), workers=1)
    return {"metrics": _run(evaluator, inputs, outputs), "out": out}


def _same(a: dict, b: dict, tol: float = 0.0) -> None:
    assert set(a) == set(b) == {"bbox", "segm"}
    for task in a:
        for m in D2_METRICS:
            assert abs(a[task][m] - b[task][m]) <= tol, (task, m, a[task][m], b[task][m])


def test_two_processes_give_the_metrics_of_one_and_of_the_gather_path(runs, one_process):
    rank0, rank1 = runs["held"]
    want = one_process["metrics"]
    assert want["bbox"]["AP"] > 1.0 and want["segm"]["AP"] > 1.0  # not degenerate
    for key in ("sharded", "gather", "no_output_dir", "rank0_only"):
        _same(rank0[key], want)
        assert rank1[key] is None, key  # as Detectron2's evaluator: the metrics on the main process only
    _same(rank0["lvis_api"], want, tol=1e-7)  # Detectron2's evaluator on the gathered predictions (lvis-api)


def test_sharded_results_file_is_the_gathered_one_byte_for_byte(runs, one_process):
    out = runs["out"]
    with open(os.path.join(out, "sharded", RESULTS_FILE), "rb") as f:
        sharded = f.read()
    for other in (os.path.join(out, "gather"), os.path.join(out, "lvis_api"), one_process["out"]):
        with open(os.path.join(other, RESULTS_FILE), "rb") as f:
            assert f.read() == sharded, other
    assert len(json.loads(sharded)) > 100
    # the reports of the fast evaluator, as on one process
    assert os.path.isfile(os.path.join(out, "sharded", "lvis_per_class.csv"))


def test_sharded_path_moves_no_prediction_between_processes(runs):
    for rank, held in enumerate(runs["held"]):
        # this rank's own shard existed before evaluate(): the predictions went to a file as they came
        assert f"{RESULTS_FILE}.rank{rank}.{host_name()}." in held["sharded_own_shard"]
        assert held["sharded_own_shard"] in held["sharded_shards_before_evaluate"]
        # the collectives carry a few hundred bytes (shard paths and counts), the gather path the predictions
        assert max(held["sharded_payloads"]) < 2000, held["sharded_payloads"]
    assert max(runs["held"][1]["gather_payloads"]) > 10 * max(runs["held"][1]["sharded_payloads"])


def test_shards_are_removed_and_a_killed_runs_shards_ignored(runs):
    stale = runs["stale"]
    after = runs["held"][0]["sharded_shards_after"]
    # the dead process's shard was removed at reset; the live process's and the other host's are left alone; this
    # run's own shards are gone. The metrics test above shows none of them was read (their score-1.0 false positives
    # would lower AP).
    assert after == sorted([stale["live"], stale["other_host"]])
    temp = runs["held"][0]["temp_files_after"]
    assert not [f for f in temp if f.startswith(RESULTS_FILE)], temp  # no shard and no joined file left in $TMPDIR


def test_a_shard_rank_0_cannot_read_fails_on_every_rank(runs):
    for held in runs["held"]:
        assert held["lost_error"] is not None and "TEST.LT_EVAL_SHARDS False" in held["lost_error"]
        assert "rank" in held["lost_error"] and "shared file system" in held["lost_error"]
        assert held["lost_shards_after"] == []  # each rank removed its own shard, also on failure


def test_one_process_keeps_detectron2s_path(tiny_root, tmp_path):
    """No process group (world size 1): Detectron2's flow, with its instances_predictions.pth, and no shard."""
    inputs, outputs = _predictions(tiny_root)
    evaluator = FastLVISEvaluator("lt_shapes_val", output_dir=str(tmp_path), workers=1)  # distributed=True default
    evaluator.reset()
    evaluator.process(inputs, outputs)
    assert evaluator._shard is None and len(evaluator._predictions) == len(inputs)
    got = evaluator.evaluate()
    assert got["bbox"]["AP"] > 1.0
    assert (tmp_path / "instances_predictions.pth").exists() and (tmp_path / RESULTS_FILE).exists()
    assert not _shard_files(str(tmp_path))


def test_memory_benchmark_flags_different_tables_and_files():
    """benchmarks/sharded_inference_memory.py says "NO" when the modes' tables or results files differ."""
    from _scripts import load_script

    bench = load_script("benchmarks/sharded_inference_memory.py", "lt_bench_sharded_memory")
    metrics = {t: {m: 10.0 for m in D2_METRICS} for t in ("bbox", "segm")}
    rank = {"ru_maxrss": 700 << 20, "rss_at_evaluate": 600 << 20, "peak_from_evaluate": 700 << 20, "evaluate_s": 1.0}

    def run(mode, sha, ap):
        results = {t: dict(m, AP=ap) for t, m in metrics.items()}
        ranks = [dict(rank, results=results), dict(rank, results=None)]
        return {"mode": mode, "ranks": ranks, "wall_s": 1.0, "results_bytes": 1 << 20, "results_sha256": sha,
                "detections": 10}  # fmt: skip

    args = bench.parse_args(["--weights", "w.pth"])
    same = bench.report([run("sharded", "a" * 64, 10.0), run("lvis-api", "a" * 64, 10.0)], args)
    assert "byte-identical across modes: yes" in same and "identical across modes: yes" in same
    assert "| sharded | 700 | 600 | 700 | +100 | 700 | 600 |" in same
    other = bench.report([run("sharded", "a" * 64, 10.0), run("lvis-api", "b" * 64, 10.04)], args)
    assert "byte-identical across modes: NO" in other and "tables identical across modes: yes" in other  # 10.0
    other = bench.report([run("sharded", "a" * 64, 10.0), run("lvis-api", "a" * 64, 10.2)], args)
    assert "tables identical across modes: NO" in other
    # the child's train_net arguments after "--"
    child = bench.parse_args(["--weights", "w", "--child", "d", "--", "--num-gpus", "2", "MODEL.DEVICE", "cpu"])
    assert child.child == "d" and child.train_net_args[-4:] == ["--num-gpus", "2", "MODEL.DEVICE", "cpu"]
