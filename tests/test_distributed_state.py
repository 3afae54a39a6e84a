"""Rank-aware state in 2 CPU processes (gloo), on crafted inputs: what is summed or gathered across ranks (the LDA
risk balancer's accuracy counts, the class counts, the meta-weighting eps history) and what stays per rank (the
batch statistics of LADE's regulariser and LDA's divergence). One launch; each rank saves what it holds."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("detectron2")
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from lt_detectron import losses as lt_losses  # noqa: E402
from lt_detectron.config import add_lt_config  # noqa: E402
from lt_detectron.engine.distributed import launch  # noqa: E402
from lt_detectron.engine.meta_hook import _GatheredEpsTracker  # noqa: E402
from lt_detectron.modeling import build_box_predictor  # noqa: E402
from lt_detectron.modeling.class_counts import read_class_counts  # noqa: E402
from lt_detectron.modeling.lda_predictor import LDAScores  # noqa: E402
from lt_detectron.utils.distributed import all_reduce_sum, broadcast_from_main  # noqa: E402

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


def _state_worker(out: str) -> None:
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

    # 3. The LDA head: a rank without foreground RoIs still joins the reduction (no hang), both ranks then hold
    # rank 0's accuracies; the divergence is computed on each rank's own RoIs.
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
    # Both ranks with foreground RoIs: loss_lda_intra is rank-local (not the global batch's).
    gt = [0, 0, 1, 1] if rank == 0 else [0, 1, 1, 2]
    x = torch.randn(len(gt), DIM, generator=g)
    loss = lda.losses((LDAScores(lda.fgbg_score(x), x), torch.zeros(len(gt), 4 * NUM_CLASSES)), _proposals(gt))
    y = torch.tensor(gt)
    all_x, all_y = torch.cat(comm.all_gather(x)), torch.cat(comm.all_gather(y))
    with torch.no_grad():
        held["lda_intra"] = float(loss["loss_lda_intra"])
        held["lda_intra_local"] = float(lda.lambda_d * lt_losses.lda_divergence(lda.projection(x), y)[0])
        held["lda_intra_global"] = float(lda.lambda_d * lt_losses.lda_divergence(lda.projection(all_x), all_y)[0])

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

    # 5. The meta-weighting eps history: each rank's eps, gathered into one update on every rank.
    tracker = _GatheredEpsTracker(NUM_CLASSES, period=1)
    if rank == 0:
        tracker.update(torch.tensor([0.5, -1.0]), torch.tensor([0, 1]), 1)
    else:
        tracker.update(torch.tensor([2.0]), torch.tensor([0]), 1)
    held["flush_1"] = tracker.flush(1)
    held["flush_2"] = tracker.flush(2)  # no rank took a meta step
    held["tracker"] = tracker.state_dict()
    torch.save(held, os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp_state"))
    launch(_state_worker, 2, device="cpu", args=(out,))
    return [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(2)]


def test_risk_balancer_sums_accuracy_counts_over_ranks(held):
    for rank in held:
        assert (rank["balancer"]["acc_unbalanced"], rank["balancer"]["acc_balanced"]) == EXPECTED_WINDOW
        assert rank["balancer_alphas"][-1] == pytest.approx(62.5 - 50.0)
    assert held[0]["balancer_alphas"] == held[1]["balancer_alphas"]


def test_lda_head_balancer_is_global_and_a_rank_without_foreground_joins(held):
    expected = held[0]["lda_rank0_accuracies"]
    for rank in held:  # rank 1 had no foreground RoI: it records rank 0's accuracies (the global batch's)
        assert (rank["lda_balancer"]["acc_unbalanced"][0], rank["lda_balancer"]["acc_balanced"][0]) == expected
    assert held[0]["lda_balancer"] == held[1]["lda_balancer"]
    assert len(held[0]["lda_balancer"]["acc_unbalanced"]) == 2


def test_batch_statistics_of_lade_and_lda_stay_per_rank(held):
    for rank in held:
        assert rank["lda_intra"] == pytest.approx(rank["lda_intra_local"], rel=1e-6)
        assert rank["lda_intra_local"] != pytest.approx(rank["lda_intra_global"], rel=1e-3)
        assert rank["lader"] == pytest.approx(rank["lader_local"], rel=1e-6)
        assert rank["lader_local"] != pytest.approx(rank["lader_global"], rel=1e-3)


def test_class_counts_come_from_rank_0_and_errors_reach_every_rank(held):
    for rank in held:
        assert rank["class_counts"] == [5.0, 3.0, 1.0]
        assert rank["count_error"] is not None and "NUM_CLASSES" in rank["count_error"]
        assert rank["broadcast_error"] == "annotation file unreadable"


def test_eps_history_is_gathered_from_all_ranks(held):
    for rank in held:
        assert rank["flush_1"] is True and rank["flush_2"] is False
        history = rank["tracker"]
        assert history["iterations"] == [1] and history["updates"] == 1
        assert history["means"][0][0] == pytest.approx((0.5 + 2.0) / 2) and history["means"][0][1] == -1.0
    assert held[0]["tracker"]["total_count"].tolist() == held[1]["tracker"]["total_count"].tolist() == [2, 1, 0]
