"""Two CPU processes (gloo), one launch (process start-up and imports dominate on a small machine):

1. rank-aware state on crafted inputs: what is summed or gathered across ranks (the LDA risk balancer's accuracy
   counts and divergence centres, the class counts, the meta-weighting eps history) and what stays per rank (the
   batch statistics of LADE's regulariser); LDA's loss on two processes equals one process holding both halves;
2. through tools/train_net.py's code path, every demo head and meta-weighting trains with finite losses and
   identical parameters / risk-balancer / meta state on both ranks, and runs stopped after a checkpoint and
   resumed end with the same weights as the uninterrupted runs.

Each rank saves what it holds; the assertions run here, in the pytest process.
"""

from __future__ import annotations

import logging
import math
import os
import shutil

import numpy as np
import pytest
import torch
from _scripts import load_script

pytest.importorskip("detectron2")
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from lt_detectron import losses as lt_losses  # noqa: E402
from lt_detectron.config import add_lt_config  # noqa: E402
from lt_detectron.data import generate_lt_shapes  # noqa: E402
from lt_detectron.engine.distributed import launch  # noqa: E402
from lt_detectron.engine.meta_hook import MetaWeightingHook  # noqa: E402
from lt_detectron.engine.meta_step import _GatheredEpsTracker  # noqa: E402
from lt_detectron.modeling import build_box_predictor  # noqa: E402
from lt_detectron.modeling.class_counts import read_class_counts  # noqa: E402
from lt_detectron.modeling.lda_predictor import LDAScores  # noqa: E402
from lt_detectron.utils.distributed import all_reduce_sum, broadcast_from_main  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADS = ("baseline", "balanced_softmax", "cb", "eqlv2", "fed", "focal", "lade", "lda", "ldam", "meta", "seesaw")
# Stopped and resumed: the heads with state (risk balancer, Seesaw's counts, EQLv2's statistics, meta hook) and one
# drawing random classes each step.
RESUMED_HEADS = ("eqlv2", "fed", "lda", "meta", "seesaw")
MAX_ITER, CHECKPOINT_ITER = 3, 1  # CHECKPOINT_PERIOD 2 saves model_0000001.pth after iteration 1
# The demo configs with less work: 64 px images, one image per rank, few RoIs, no evaluation. The LR drops at
# iteration 2 (after the checkpoint) and the meta stage starts at iteration 1, so both span the resume point.
TINY = [
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.MAX_ITER", str(MAX_ITER),
    "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "(2,)",
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


# --- 1. rank-aware state on crafted inputs ---------------------------------------------------------------
NUM_CLASSES, DIM = 3, 8
# (correct unbalanced, correct balanced, foreground RoIs) per step; rank 1 has no foreground in steps 1 and 2.
BALANCER_COUNTS = {0: [(3, 1, 4), (0, 0, 0), (2, 2, 2)], 1: [(0, 0, 0), (0, 0, 0), (0, 1, 2)]}
# Step 1: 3/4 and 1/4 correct; step 2: no foreground anywhere (not recorded); step 3: 2/4 and 3/4.
EXPECTED_WINDOW = ([75.0, 50.0], [25.0, 75.0])


def _cfg(classifier: str, counts) -> object:
    name = f"ddp_counts_{comm.get_rank()}"  # each rank registers its own counts: only rank 0's may be used
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    records = [
        {"image_id": 100 * c + i, "annotations": [{"category_id": c}]} for c, n in enumerate(counts) for i in range(n)
    ]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=[f"c{c}" for c in range(len(counts))])
    cfg = get_cfg()
    add_lt_config(cfg)
    cfg.DATASETS.TRAIN = (name,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.LT.BOX_CLASSIFIER = classifier
    cfg.MODEL.LT.LDA.PROJ_DIM = 4
    cfg.MODEL.LT.LDA.WINDOW = 3
    return cfg


def _proposals(gt_classes) -> list:
    p = Instances((64, 64))
    n = len(gt_classes)
    p.proposal_boxes = Boxes(torch.tensor([[4.0, 4.0, 30.0, 30.0]]).repeat(n, 1))
    p.gt_boxes = Boxes(torch.tensor([[6.0, 5.0, 31.0, 28.0]]).repeat(n, 1))
    p.gt_classes = torch.as_tensor(gt_classes, dtype=torch.long)
    return [p]


def _state_checks() -> dict:
    rank = comm.get_rank()
    held = {}
    # 1. RiskBalancer.update_counts with an all-reduce: the same window on both ranks, from the global counts.
    balancer = lt_losses.RiskBalancer(gamma=1.0, window=3, reduce=all_reduce_sum)
    held["balancer_alphas"] = [balancer.update_counts(*c) for c in BALANCER_COUNTS[rank]]
    held["balancer"] = balancer.state_dict()

    # 2. Class counts: rank 0 reads, every rank gets its value; an error on rank 0 reaches every rank.
    counts = [5, 3, 1] if rank == 0 else [7, 7, 7]
    held["class_counts"] = read_class_counts(_cfg("lda", counts)).tolist()
    # Rank 0's data has 4 classes for NUM_CLASSES 3; rank 1's would pass, but it checks rank 0's counts.
    try:
        read_class_counts(_cfg("lda", [5, 3, 1, 1] if rank == 0 else [1, 1, 1]))
        held["count_error"] = None
    except ValueError as err:
        held["count_error"] = str(err)

    def read_fails_on_rank_0() -> str:
        raise OSError("annotation file unreadable")  # only rank 0 calls it

    try:
        broadcast_from_main(read_fails_on_rank_0)
        held["broadcast_error"] = None
    except OSError as err:
        held["broadcast_error"] = str(err)

    # 3. The LDA head: a rank without foreground RoIs still joins the reductions (no hang), both ranks then hold
    # rank 0's accuracies; the divergence's class centres are the global batch's.
    torch.manual_seed(0)  # the same initial predictor on both ranks, as DDP would broadcast it
    lda = build_box_predictor(_cfg("lda", counts), ShapeSpec(channels=DIM)).train()
    g = torch.Generator().manual_seed(10 + rank)
    gt = [0, 0, 1, 2, NUM_CLASSES] if rank == 0 else [NUM_CLASSES] * 3
    x = torch.randn(len(gt), DIM, generator=g)
    deltas = torch.zeros(len(gt), 4 * NUM_CLASSES)
    lda.losses((LDAScores(fgbg=lda.fgbg_score(x), features=x), deltas), _proposals(gt))
    if rank == 0:
        y, fg = torch.tensor(gt[:4]), x[:4]
        correct_u = int((lda.unbalanced_score(fg).argmax(1) == y).sum())
        correct_b = int((lda.balanced_score(fg).argmax(1) == y).sum())
        held["lda_rank0_accuracies"] = (100.0 * correct_u / 4, 100.0 * correct_b / 4)
    held["lda_balancer"] = lda.risk_balancer.state_dict()
    # Both ranks with foreground RoIs: loss_lda_intra is the global batch's.
    gt = [0, 0, 1, 1] if rank == 0 else [0, 1, 1, 2]
    x = torch.randn(len(gt), DIM, generator=g)
    loss = lda.losses((LDAScores(lda.fgbg_score(x), x), torch.zeros(len(gt), 4 * NUM_CLASSES)), _proposals(gt))
    y = torch.tensor(gt)
    all_x, all_y = torch.cat(comm.all_gather(x)), torch.cat(comm.all_gather(y))
    with torch.no_grad():
        held["lda_intra"] = float(loss["loss_lda_intra"])
        held["lda_intra_local"] = float(lda.lda.lambda_d * lt_losses.lda_divergence(lda.projection(x), y)[0])
        held["lda_intra_global"] = float(lda.lda.lambda_d * lt_losses.lda_divergence(lda.projection(all_x), all_y)[0])
    held["lda_balancer_after_2"] = lda.risk_balancer.state_dict()

    # 4. LADE's regulariser on each rank's own RoIs.
    lade = build_box_predictor(_cfg("lade", counts), ShapeSpec(channels=DIM)).train()
    scores = torch.randn(len(gt), NUM_CLASSES + 1, generator=g)
    loss = lade.losses((scores, torch.zeros(len(gt), 4 * NUM_CLASSES)), _proposals(gt))
    prior = lade.source_prior
    all_scores = torch.cat(comm.all_gather(scores))
    held["lader"] = float(loss["loss_lader"])
    held["lader_local"] = float(
        lade.alpha * lt_losses.lader(scores, y, prior, lam=lade.lam, importance=lade.importance)
    )
    held["lader_global"] = float(
        lade.alpha * lt_losses.lader(all_scores, all_y, prior, lam=lade.lam, importance=lade.importance)
    )

    held["lda_equivalence"] = _lda_equivalence_check(rank)

    # 5. The meta-weighting eps history: each rank's eps, gathered into one update on every rank.
    tracker = _GatheredEpsTracker(NUM_CLASSES, period=1, reduce=all_reduce_sum)
    if rank == 0:
        tracker.update(torch.tensor([0.5, -1.0]), torch.tensor([0, 1]), 1)
    else:
        tracker.update(torch.tensor([2.0]), torch.tensor([0]), 1)
    held["flush_1"] = tracker.flush(1)
    held["flush_2"] = tracker.flush(2)  # no rank took a meta step
    held["tracker"] = tracker.state_dict()
    return held


# LDA on two processes against one: the global batch split in halves of equal RoI counts (as Detectron2's sampler gives
# each image BATCH_SIZE_PER_IMAGE RoIs); a fixed a_t so that L_b's gradient is tested whatever the accuracies.
EQUIV_GT = [0, 1, 1, 2, 3, 3, 0, 0, 2, 2, 1, 3]
EQUIV_ALPHA = 2.0


def _equivalence_cfg():
    cfg = _cfg("lda", [5, 3, 1])
    cfg.MODEL.LT.LDA.FIXED_ALPHA = EQUIV_ALPHA
    return cfg


def _lda_terms_and_grads(lda, x: torch.Tensor, deltas: torch.Tensor, gt) -> tuple:
    out = lda.losses((LDAScores(lda.fgbg_score(x), x), deltas), _proposals(gt))
    params = [p for p in lda.parameters() if p.requires_grad]
    grads = torch.autograd.grad(sum(out.values()), params, allow_unused=True)
    names = [n for n, p in lda.named_parameters() if p.requires_grad]
    grads = {n: (torch.zeros_like(p) if g is None else g) for n, p, g in zip(names, params, grads)}
    return {k: float(v) for k, v in out.items()}, grads


def _lda_equivalence_check(rank: int) -> dict:
    torch.manual_seed(1)  # the same initial predictor on both ranks, as DDP broadcasts it
    lda = build_box_predictor(_equivalence_cfg(), ShapeSpec(channels=DIM)).train()
    initial = {k: v.clone() for k, v in lda.state_dict().items()}
    g = torch.Generator().manual_seed(42)  # the same global batch on both ranks
    x_all = torch.randn(len(EQUIV_GT), DIM, generator=g)
    deltas_all = torch.randn(len(EQUIV_GT), 4 * NUM_CLASSES, generator=g)
    half = len(EQUIV_GT) // 2
    rows = slice(rank * half, (rank + 1) * half)
    terms, grads = _lda_terms_and_grads(lda, x_all[rows], deltas_all[rows], EQUIV_GT[rows])
    # What DDP does to gradients: the mean over ranks.
    grads = {n: all_reduce_sum(v) / comm.get_world_size() for n, v in grads.items()}
    return {"initial": initial, "x": x_all, "deltas": deltas_all, "terms": terms, "grads": grads}


# --- 2. training through tools/train_net.py's code path --------------------------------------------------
def _load_train_net():
    return load_script("tools/train_net.py", "lt_tools_train_net")


def _run(train_net, head: str, root: str, output_dir: str, resume: bool):
    before = {name: list(log.handlers) for name, log in _loggers().items()}
    argv = ["--config-file", os.path.join(REPO, "configs", "demo", f"lt_shapes_{head}.yaml")]
    argv += ["--resume"] if resume else []
    args = default_argument_parser().parse_args(
        argv + TINY + ["DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", output_dir]
    )
    trainer = train_net.build_trainer(train_net.setup_cfg(args), resume=args.resume)
    trainer.train()
    # default_setup adds file and console handlers for each OUTPUT_DIR; one process runs many here: drop them.
    for name, log in _loggers().items():
        for handler in set(log.handlers) - set(before.get(name, ())):
            log.removeHandler(handler)
            handler.close()
    setup_logger.cache_clear()
    return trainer


def _loggers() -> dict:
    return {name: logging.getLogger(name) for name in ("detectron2", "fvcore", "d2", "lt_detectron", "")}


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


def _worker(root: str, out: str) -> None:
    """Runs in each of the 2 processes: the state checks, then per head an uninterrupted run (and for
    RESUMED_HEADS one resumed from its checkpoint)."""
    held = {"state": _state_checks()}
    train_net = _load_train_net()
    for head in HEADS:
        straight_dir, resumed_dir = os.path.join(out, head, "straight"), os.path.join(out, head, "resumed")
        held[head] = {"straight": _held_state(_run(train_net, head, root, straight_dir, resume=False))}
        if head not in RESUMED_HEADS:
            continue
        if comm.is_main_process():  # the run "stopped" after the checkpoint of iteration CHECKPOINT_ITER
            os.makedirs(resumed_dir)
            name = f"model_{CHECKPOINT_ITER:07d}.pth"
            shutil.copy(os.path.join(straight_dir, name), resumed_dir)
            with open(os.path.join(resumed_dir, "last_checkpoint"), "w") as f:
                f.write(name)
        comm.synchronize()
        held[head]["resumed"] = _held_state(_run(train_net, head, root, resumed_dir, resume=True))
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
    elif isinstance(a, torch.Tensor):  # bitwise equal, NaN matching NaN (a class without eps in a window)
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, what
        same = a == b
        if a.is_floating_point():
            same |= a.isnan() & b.isnan()
        assert bool(same.all()), what
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), what
    else:
        assert a == b, what


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ddp_lt_shapes"))
    generate_lt_shapes(root, seed=0, overwrite=True, num_train_images=40, num_val_images=8)
    out = str(tmp_path_factory.mktemp("ddp_runs"))
    launch(_worker, 2, device="cpu", args=(root, out))
    return [torch.load(os.path.join(out, f"rank{r}.pt"), map_location="cpu", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def state(two_rank_runs) -> list:
    return [rank["state"] for rank in two_rank_runs]


def test_risk_balancer_sums_accuracy_counts_over_ranks(state):
    for rank in state:
        assert (rank["balancer"]["acc_unbalanced"], rank["balancer"]["acc_balanced"]) == EXPECTED_WINDOW
        # gamma 1; zero-filled window of 3 (the default ramp): (sum of A_u - sum of A_b) / 3.
        assert rank["balancer_alphas"][-1] == pytest.approx((75.0 + 50.0 - 25.0 - 75.0) / 3)
    assert state[0]["balancer_alphas"] == state[1]["balancer_alphas"]


def test_lda_head_balancer_is_global_and_a_rank_without_foreground_joins(state):
    expected = state[0]["lda_rank0_accuracies"]
    for rank in state:  # rank 1 had no foreground RoI: it records rank 0's accuracies (the global batch's)
        assert (rank["lda_balancer"]["acc_unbalanced"], rank["lda_balancer"]["acc_balanced"]) == tuple(
            [a] for a in expected
        )
    assert state[0]["lda_balancer_after_2"] == state[1]["lda_balancer_after_2"]  # both ranks with foreground
    assert len(state[0]["lda_balancer_after_2"]["acc_unbalanced"]) == 2


def test_lda_centres_are_global_and_lade_statistics_stay_per_rank(state):
    for rank in state:
        assert rank["lda_intra"] == pytest.approx(rank["lda_intra_global"], rel=1e-6)
        assert rank["lda_intra_local"] != pytest.approx(rank["lda_intra_global"], rel=1e-3)
        assert rank["lader"] == pytest.approx(rank["lader_local"], rel=1e-6)
        assert rank["lader_local"] != pytest.approx(rank["lader_global"], rel=1e-3)


def test_lda_on_two_processes_equals_one_process_with_both_halves(state):
    """Terms: L_u, L_fgbg and box regression are means (DDP averages the ranks' values), L_b a sum over the global
    batch (the ranks' values add up), the divergence and a_t global (each rank holds the global value); gradients
    averaged over ranks equal one process's."""
    ranks = [rank["lda_equivalence"] for rank in state]
    lda = build_box_predictor(_equivalence_cfg(), ShapeSpec(channels=DIM)).train()
    lda.load_state_dict(ranks[0]["initial"])
    terms, grads = _lda_terms_and_grads(lda, ranks[0]["x"], ranks[0]["deltas"], EQUIV_GT)
    summed = ("loss_cls_balanced",)
    shared = ("loss_lda_intra", "loss_lda_inter")
    for key, value in terms.items():
        per_rank = [r["terms"][key] for r in ranks]
        if key in shared:
            assert per_rank == pytest.approx([value] * 2, rel=1e-5, abs=1e-7), key
        else:
            combined = sum(per_rank) if key in summed else sum(per_rank) / 2
            assert combined == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert terms["loss_cls_balanced"] > 0 and terms["loss_lda_intra"] > 0
    for name, grad in grads.items():
        for r in ranks:
            assert torch.allclose(r["grads"][name], grad, rtol=1e-4, atol=1e-6), name


def test_class_counts_come_from_rank_0_and_errors_reach_every_rank(state):
    for rank in state:
        assert rank["class_counts"] == [5.0, 3.0, 1.0]
        assert rank["count_error"] is not None and "NUM_CLASSES" in rank["count_error"]
        assert rank["broadcast_error"] == "annotation file unreadable"


def test_eps_history_is_gathered_from_all_ranks(state):
    for rank in state:
        assert rank["flush_1"] is True and rank["flush_2"] is False
        history = rank["tracker"]
        assert history["iterations"] == [1] and history["updates"] == 1
        assert history["means"][0][0] == pytest.approx((0.5 + 2.0) / 2) and history["means"][0][1] == -1.0
        assert history["total_count"].tolist() == [2, 1, 0]


@pytest.mark.parametrize("head", HEADS)
def test_two_processes_train_identically_and_resume_exactly(two_rank_runs, head):
    rank0, rank1 = (runs[head] for runs in two_rank_runs)
    straight = rank0["straight"]
    losses = straight["total_loss"]
    assert len(losses) == MAX_ITER and all(math.isfinite(v) for v in losses), losses
    runs = ("straight", "resumed") if head in RESUMED_HEADS else ("straight",)
    # DDP: every rank holds the same parameters after the steps.
    for run in runs:
        _assert_same(rank0[run]["params"], rank1[run]["params"], f"{head} {run}: rank 0 vs rank 1 parameters")
    if head == "lda":  # the risk balancer: one window on every rank
        assert len(straight["balancer"]["acc_unbalanced"]) >= 1
        for run in runs:
            _assert_same(rank0[run]["balancer"], rank1[run]["balancer"], f"lda {run}: balancer rank 0 vs 1")
    # Seesaw's cumulative counts and EQLv2's gradient statistics are summed over ranks: the same on both, and moved.
    statistics = {"seesaw": ("cumulative_counts",), "eqlv2": ("eqlv2.pos_grad", "eqlv2.neg_grad", "eqlv2.num_batches")}
    for name in statistics.get(head, ()):
        key = f"roi_heads.box_predictor.{name}"
        assert bool(straight["buffers"][key].abs().sum() > 0), key
        for run in runs:
            _assert_same(rank0[run]["buffers"][key], rank1[run]["buffers"][key], f"{head} {run}: {name} rank 0 vs 1")
    if head == "meta":  # eps history gathered from both ranks, dev sampler shared: the same state everywhere
        assert straight["meta"]["reweighter"]["meta_steps"] == MAX_ITER - 1  # iterations 1, 2
        assert straight["meta"]["reweighter"]["tracker"]["iterations"] == [1, 2]
        for run in runs:
            _assert_same(rank0[run]["meta"], rank1[run]["meta"], f"meta {run}: hook state rank 0 vs 1")
    if head not in RESUMED_HEADS:
        return
    # Stopped after iteration 1 and resumed: iteration 2 again, ending with the uninterrupted run's weights
    # (rank 0's buffers too: its BatchNorm statistics are the ones the checkpoint holds).
    assert rank0["resumed"]["start_iter"] == CHECKPOINT_ITER + 1 and rank0["resumed"]["iter"] == MAX_ITER
    for rank in (rank0, rank1):
        _assert_same(rank["resumed"]["params"], rank["straight"]["params"], f"{head}: resumed vs uninterrupted")
    _assert_same(rank0["resumed"]["buffers"], straight["buffers"], f"{head}: rank 0 buffers, resumed vs straight")
    assert rank0["resumed"]["total_loss"] == losses[CHECKPOINT_ITER + 1 :]
    if head == "lda":
        _assert_same(rank0["resumed"]["balancer"], straight["balancer"], "lda: balancer resumed vs straight")
    if head == "meta":
        _assert_same(rank0["resumed"]["meta"], straight["meta"], "meta: hook state resumed vs straight")


def test_train_net_launches_cpu_processes_for_a_cpu_model(monkeypatch):
    """`tools/train_net.py --num-gpus 2` reads MODEL.DEVICE and hands the launcher N processes and that device
    (the launch itself is the one the tests above ran)."""
    train_net = _load_train_net()
    calls = []
    monkeypatch.setattr(train_net, "launch", lambda main, num, **kw: calls.append((main, num, kw)))
    config = os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml")
    for device in ("cpu", "cuda"):
        train_net.invoke_main(["--num-gpus", "2", "--config-file", config, "MODEL.DEVICE", device])
    assert [(main, num, kw["device"]) for main, num, kw in calls] == [
        (train_net.launched_main, 2, "cpu"),  # `main`, with a worker's user error reported once by the launcher
        (train_net.launched_main, 2, "cuda"),
    ]
