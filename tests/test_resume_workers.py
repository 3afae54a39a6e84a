"""Exact resume with data-loader workers (lt_detectron/engine/resume.py): every sample is augmented from
(seed, rank, its position in the rank's stream), so the number of workers and any restart leave the training
unchanged.

- The stream itself: samples come out in stream order, each mapped alike, with 0, 2 or 3 workers, with and without
  aspect-ratio grouping, from the start or resumed mid-stream; a mapper's rejected samples are replaced alike.
- The demo model (tiny lt_shapes, batch 2): 0, 1 and 2 loader workers train bitwise the same weights (and another
  SEED other ones, so the comparison can fail); with 2 workers, a run stopped after 3 iterations and resumed ends
  with the uninterrupted run's weights.
- tools/train_net.py with 2 workers and a checkpoint every iteration, killed with SIGKILL three times (at seeded
  random moments and once while a checkpoint is being written), then `--resume`d to the end: bitwise the weights of
  an uninterrupted run, and no temporary file left in the output folder.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import pytest

pytest.importorskip("detectron2")
torch = pytest.importorskip("torch")

from detectron2.data import build_detection_train_loader  # noqa: E402
from detectron2.data.samplers import TrainingSampler  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402

from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.engine import LTTrainer, build_cfg  # noqa: E402
from lt_detectron.engine.resume import ResumableSampler, SeededSampleStream  # noqa: E402
from lt_detectron.utils.io import TEMP_SUFFIX  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
# The demo baseline (aspect-ratio grouping on, repeat-factor sampling, random flips), shrunk: batch 2, few RoIs.
TINY = [
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "2",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "DATASETS.TEST", "()",
]  # fmt: skip


# --- 1. the sample stream ---------------------------------------------------------------------------------
def _draws(record: dict) -> Optional[dict]:
    """A mapper whose output shows the generators it ran under (Python, NumPy, torch); rejects ids 3 and 5."""
    if record["id"] in (3, 5):
        return None
    return dict(record, draws=(random.random(), float(np.random.rand()), float(torch.rand(()))))


def _stream_output(workers: int, grouping: bool, start_iteration: int, batches: int = 6) -> List[dict]:
    records = [{"id": i, "width": 8, "height": 8} for i in range(10)]
    sampler = ResumableSampler(TrainingSampler(len(records), seed=7), images_per_batch=2)
    sampler.start_iteration = start_iteration
    chunk = 1 if grouping else 2
    stream = SeededSampleStream(records, _draws, sampler, chunk_size=chunk, rank=0, seed=11)
    loader = build_detection_train_loader(
        stream, mapper=None, sampler=None, total_batch_size=2, aspect_ratio_grouping=grouping, num_workers=workers
    )
    out = []
    for batch in loader:
        out.extend(batch)
        if len(out) == 2 * batches:
            return out
    raise AssertionError("the loader ended")


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on a 2-core machine
@pytest.mark.parametrize("grouping", [False, True], ids=["batched", "grouped"])
def test_samples_come_in_stream_order_mapped_alike_with_any_workers_and_start(grouping):
    reference = _stream_output(0, grouping, 0)
    assert not {3, 5} & {sample["id"] for sample in reference}, "rejected samples must be replaced"
    assert len({sample["draws"] for sample in reference}) == len(reference), "every position must have its own draws"
    for workers in (2, 3):
        assert _stream_output(workers, grouping, 0) == reference, f"{workers} workers"
        # Resumed after 1 and 2 batches: the rest of the stream, the same samples mapped the same way.
        assert _stream_output(workers, grouping, 1, 5) == reference[2:], f"{workers} workers, resumed at 1"
        assert _stream_output(workers, grouping, 2, 4) == reference[4:], f"{workers} workers, resumed at 2"


def test_a_mapper_that_rejects_everything_is_a_clear_error_and_the_seed_is_required():
    sampler = ResumableSampler(TrainingSampler(4, seed=0), images_per_batch=1)
    stream = SeededSampleStream([{"id": 3}] * 4, _draws, sampler, chunk_size=1, seed=0, max_attempts=5)
    with pytest.raises(RuntimeError, match="returned None for 5 images in a row"):
        stream.map(0, 0)
    stream.seed = None
    with pytest.raises(RuntimeError, match="no seed set"):
        next(iter(stream))


# --- 2. the demo model, in this process ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lt_shapes_resume_workers"))
    generate_lt_shapes(root, seed=0, overwrite=True, num_train_images=12, num_val_images=8)
    yield root
    register_lt_shapes()  # back to the default root for other tests (registration is lazy: nothing generated)


def _train(root: str, out: str, workers: int, opts: List[str], resume: bool = False) -> Dict[str, torch.Tensor]:
    cfg = build_cfg(DEMO_BASELINE, TINY + opts + ["DATALOADER.NUM_WORKERS", str(workers)])
    cfg.merge_from_list(["DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", out])
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # what default_setup does in tools/train_net.py: the model's initial weights
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _differences(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> List[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_zero_one_and_two_workers_train_the_same_weights(tiny_root, tmp_path):
    opts = ["SOLVER.MAX_ITER", "4"]
    weights = {w: _train(tiny_root, str(tmp_path / f"w{w}"), w, opts) for w in (0, 1, 2)}
    assert _differences(weights[1], weights[0]) == [] and _differences(weights[2], weights[0]) == []
    other_seed = _train(tiny_root, str(tmp_path / "seed1"), 2, opts + ["SEED", "1"])
    assert _differences(other_seed, weights[0]), "another SEED must train other weights"


def test_stopped_and_resumed_with_two_workers_equals_uninterrupted(tiny_root, tmp_path):
    # A checkpoint after 3 iterations: the resumed stream starts at an odd batch, i.e. not at worker 0's turn.
    opts = ["SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "3"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight = _train(tiny_root, str(straight_dir), 2, opts)
    resumed_dir.mkdir()
    (resumed_dir / "model_0000002.pth").write_bytes((straight_dir / "model_0000002.pth").read_bytes())
    (resumed_dir / "last_checkpoint").write_text("model_0000002.pth")
    resumed = _train(tiny_root, str(resumed_dir), 2, opts, resume=True)
    assert _differences(resumed, straight) == []
    stopped = torch.load(resumed_dir / "model_0000002.pth", map_location="cpu", weights_only=True)["model"]
    assert _differences(stopped, straight), "the checkpoint must differ from the final weights (3 more iterations)"


# --- 3. tools/train_net.py killed with SIGKILL ---------------------------------------------------------------
KILL_ITERS = 16  # the last kill comes by iteration 14, even at 0.1 s per iteration
KILL_OPTS = ["SOLVER.MAX_ITER", str(KILL_ITERS), "SOLVER.CHECKPOINT_PERIOD", "1", "DATALOADER.NUM_WORKERS", "2"]


def _start(root: str, out: str, resume: bool, log: str) -> subprocess.Popen:
    argv = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", DEMO_BASELINE]
    argv += ["--resume"] if resume else []
    argv += TINY + KILL_OPTS + ["DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", out]
    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    with open(log, "w") as f:  # a file, not a pipe: nobody reads while it runs
        # Its own process group: the kill reaches the loader workers too, as a SIGKILL of a job would.
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def _tail(proc: subprocess.Popen) -> str:
    with open(proc.log) as f:
        return f.read()[-3000:]


def _last_checkpoint(out: str) -> Optional[str]:
    try:
        with open(os.path.join(out, "last_checkpoint")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _checkpoint_iteration(out: str) -> int:
    """The iteration whose checkpoint `last_checkpoint` names (-1 without one)."""
    name = _last_checkpoint(out)
    return -1 if name is None else int(name[len("model_") : -len(".pth")])


def _checkpoint_temporaries(out: str) -> List[str]:
    names = os.listdir(out) if os.path.isdir(out) else []
    return [n for n in names if n.endswith(TEMP_SUFFIX) and n.startswith(("model_", "last_checkpoint"))]


def _temporaries(out: str) -> List[str]:
    return [n for n in os.listdir(out) if ".tmp" in n or TEMP_SUFFIX in n]


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"train_net.py ended (exit {proc.returncode}) before {what}:\n{_tail(proc)}")
        if time.monotonic() > end:
            _kill(proc)
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.001)


def _final_model(out: str) -> Dict[str, torch.Tensor]:
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)["model"]


def test_sigkill_at_random_moments_and_during_a_checkpoint_then_resume_equals_uninterrupted(tiny_root, tmp_path):
    reference_dir, killed_dir = str(tmp_path / "uninterrupted"), str(tmp_path / "killed")
    logs = str(tmp_path / "log")
    os.makedirs(logs)
    proc = _start(tiny_root, reference_dir, resume=False, log=os.path.join(logs, "uninterrupted.txt"))
    assert proc.wait(timeout=600) == 0, _tail(proc)

    delays = random.Random(2026)  # seeded: the same kill moments on every run of the test
    starts = 0

    def start() -> subprocess.Popen:
        nonlocal starts
        starts += 1
        resume = _last_checkpoint(killed_dir) is not None
        return _start(tiny_root, killed_dir, resume=resume, log=os.path.join(logs, f"killed{starts}.txt"))

    kills = 0
    for kind in ("random", "during a checkpoint write", "random"):
        if kind == "random":  # a random moment after 1-3 new checkpoints of this run: often during the next one
            target = _checkpoint_iteration(killed_dir) + delays.randint(1, 3)
            proc = start()
            _wait_for(
                proc, lambda: _checkpoint_iteration(killed_dir) >= target, f"the checkpoint of iteration {target}"
            )
            time.sleep(delays.uniform(0.0, 0.3))
            _kill(proc)
            assert proc.returncode == -signal.SIGKILL, "the kill came after the run ended"
            kills += 1
            continue
        # As soon as a new checkpoint temporary file appears (an earlier kill may have left one). The kill must leave
        # it (the write cut short); on a busy machine torch.save may finish first, so up to 3 tries.
        orphans: set = set()
        for _try in range(3):
            earlier = set(_checkpoint_temporaries(killed_dir))
            proc = start()
            _wait_for(proc, lambda: set(_checkpoint_temporaries(killed_dir)) - earlier, "a checkpoint being written")
            _kill(proc)
            kills += 1
            orphans = set(_checkpoint_temporaries(killed_dir)) - earlier
            if orphans:
                break
        assert orphans, "3 kills as a checkpoint's temporary file appeared all came after the write had ended"
    interrupted_at = _checkpoint_iteration(killed_dir)
    assert 3 <= interrupted_at < KILL_ITERS - 1, interrupted_at

    proc = _start(tiny_root, killed_dir, resume=True, log=os.path.join(logs, "resumed.txt"))
    assert proc.wait(timeout=600) == 0, _tail(proc)
    assert _temporaries(killed_dir) == [], "the resumed run must remove the killed writes' temporary files"
    resumed, reference = _final_model(killed_dir), _final_model(reference_dir)
    assert _differences(resumed, reference) == [], f"killed {kills} times (resumed after iteration {interrupted_at})"
