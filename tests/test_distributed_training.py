"""Two CPU processes (gloo) through tools/train_net.py's code path: every demo head and meta-weighting trains with
finite losses and identical parameters / risk-balancer / meta state on both ranks, and a run resumed from a
checkpoint ends with the same weights as the uninterrupted run.

One launch trains all heads (process start-up and imports dominate on a small machine); each rank saves what it
holds and the assertions run here, in the pytest process.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from lt_detectron.data import generate_lt_shapes  # noqa: E402
from lt_detectron.engine.distributed import launch  # noqa: E402
from lt_detectron.engine.meta_hook import MetaWeightingHook  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADS = ("baseline", "balanced_softmax", "cb", "fed", "focal", "lade", "lda", "ldam", "meta")
MAX_ITER, CHECKPOINT_ITER = 4, 1  # CHECKPOINT_PERIOD 2 saves model_0000001.pth after iteration 1
# The demo configs with less work: 64 px images, one image per rank, few RoIs, no evaluation. The LR drops at
# iteration 3 (after the checkpoint) and the meta stage starts at iteration 1, so both span the resume point.
TINY = [
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.MAX_ITER", str(MAX_ITER),
    "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "(3,)",
    "SOLVER.CHECKPOINT_PERIOD", "2",
    "DATALOADER.NUM_WORKERS", "0",
    "DATASETS.TEST", "()",
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.LT.META.START_ITER", "1",
    "MODEL.LT.META.DEV_PER_CLASS", "1",
    "MODEL.LT.META.DEV_BATCH_SIZE", "1",
    "MODEL.LT.META.LOG_PERIOD", "1",
]  # fmt: skip


def _load_train_net():
    spec = importlib.util.spec_from_file_location("lt_tools_train_net", os.path.join(REPO, "tools", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(train_net, head: str, root: str, output_dir: str, resume: bool):
    argv = ["--config-file", os.path.join(REPO, "configs", "demo", f"lt_shapes_{head}.yaml")]
    argv += ["--resume"] if resume else []
    args = default_argument_parser().parse_args(
        argv + TINY + ["DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", output_dir]
    )
    trainer = train_net.build_trainer(train_net.setup_cfg(args), resume=args.resume)
    trainer.train()
    return trainer


def _held_state(trainer) -> dict:
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    state = {
        "params": {name: p.detach().clone() for name, p in model.named_parameters()},
        "buffers": {name: b.detach().clone() for name, b in model.named_buffers()},
        "start_iter": trainer.start_iter,
        "iter": trainer.iter,
        # Rank 0 logs the mean over ranks of each rank's total loss (Detectron2 gathers them every iteration).
        "total_loss": [v for v, _ in trainer.storage.history("total_loss").values()] if comm.is_main_process() else [],
    }
    predictor = model.roi_heads.box_predictor
    if hasattr(predictor, "risk_balancer"):
        state["balancer"] = predictor.risk_balancer.state_dict()
    hook = next((h for h in trainer._hooks if isinstance(h, MetaWeightingHook)), None)
    if hook is not None:
        state["meta"] = hook.state_dict()
    return state


def _train_heads_worker(root: str, out: str, heads: tuple) -> None:
    """Runs in each of the 2 processes: per head, an uninterrupted run and one resumed from its checkpoint."""
    train_net = _load_train_net()
    held = {}
    for head in heads:
        straight_dir, resumed_dir = os.path.join(out, head, "straight"), os.path.join(out, head, "resumed")
        straight = _held_state(_run(train_net, head, root, straight_dir, resume=False))
        if comm.is_main_process():  # the run "stopped" after the checkpoint of iteration CHECKPOINT_ITER
            os.makedirs(resumed_dir)
            name = f"model_{CHECKPOINT_ITER:07d}.pth"
            shutil.copy(os.path.join(straight_dir, name), resumed_dir)
            with open(os.path.join(resumed_dir, "last_checkpoint"), "w") as f:
                f.write(name)
        comm.synchronize()
        resumed = _held_state(_run(train_net, head, root, resumed_dir, resume=True))
        held[head] = {"straight": straight, "resumed": resumed}
    torch.save(held, os.path.join(out, f"rank{comm.get_rank()}.pt"))


def _assert_same(a, b, what: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), what
        for key in a:
            _assert_same(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{what}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), what
    else:
        assert a == b, what


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ddp_lt_shapes"))
    generate_lt_shapes(root, seed=0, overwrite=True, num_train_images=40, num_val_images=8)
    out = str(tmp_path_factory.mktemp("ddp_runs"))
    launch(_train_heads_worker, 2, device="cpu", args=(root, out, HEADS))
    return [torch.load(os.path.join(out, f"rank{r}.pt"), map_location="cpu") for r in range(2)]


@pytest.mark.parametrize("head", HEADS)
def test_two_processes_train_identically_and_resume_exactly(two_rank_runs, head):
    rank0, rank1 = (runs[head] for runs in two_rank_runs)
    straight = rank0["straight"]
    losses = straight["total_loss"]
    assert len(losses) == MAX_ITER and all(math.isfinite(v) for v in losses), losses
    # DDP: every rank holds the same parameters after the steps.
    for run in ("straight", "resumed"):
        _assert_same(rank0[run]["params"], rank1[run]["params"], f"{head} {run}: rank 0 vs rank 1 parameters")
    # Stopped after iteration 1 and resumed: iterations 2..3 again, ending with the uninterrupted run's weights
    # (rank 0's buffers too: its BatchNorm statistics are the ones the checkpoint holds).
    assert rank0["resumed"]["start_iter"] == CHECKPOINT_ITER + 1 and rank0["resumed"]["iter"] == MAX_ITER
    for rank in (rank0, rank1):
        _assert_same(rank["resumed"]["params"], rank["straight"]["params"], f"{head}: resumed vs uninterrupted")
    _assert_same(rank0["resumed"]["buffers"], straight["buffers"], f"{head}: rank 0 buffers, resumed vs straight")
    assert rank0["resumed"]["total_loss"] == losses[CHECKPOINT_ITER + 1 :]
    if head == "lda":  # the risk balancer: one window on every rank, also after the resume
        assert len(straight["balancer"]["acc_unbalanced"]) >= 1
        for run in ("straight", "resumed"):
            _assert_same(rank0[run]["balancer"], rank1[run]["balancer"], f"lda {run}: balancer rank 0 vs 1")
        _assert_same(rank0["resumed"]["balancer"], straight["balancer"], "lda: balancer resumed vs straight")
    if head == "meta":  # eps history gathered from both ranks, dev sampler shared: the same state everywhere
        assert straight["meta"]["reweighter"]["meta_steps"] == MAX_ITER - 1  # iterations 1, 2, 3
        assert straight["meta"]["reweighter"]["tracker"]["iterations"] == [1, 2, 3]
        for run in ("straight", "resumed"):
            _assert_same(rank0[run]["meta"], rank1[run]["meta"], f"meta {run}: hook state rank 0 vs 1")
        _assert_same(rank0["resumed"]["meta"], straight["meta"], "meta: hook state resumed vs straight")


def test_train_net_cli_runs_two_cpu_processes(tmp_path):
    """`tools/train_net.py --num-gpus 2` with a CPU model: gloo processes, DDP without device_ids."""
    root = str(tmp_path / "lt_shapes")
    generate_lt_shapes(root, seed=0, overwrite=True, num_train_images=8, num_val_images=8)
    out = str(tmp_path / "out")
    config = os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml")
    opts = TINY + ["SOLVER.MAX_ITER", "2", "DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", out]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--num-gpus", "2", "--config-file", config]
        + opts,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(os.path.join(out, "log.txt")) as f:
        assert "World size: 2" in f.read()
    assert os.path.isfile(os.path.join(out, "log.txt.rank1")) and os.path.isfile(os.path.join(out, "model_final.pth"))
