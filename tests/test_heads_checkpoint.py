"""Stock Detectron2 checkpoints load into LT models; a whole Mask R-CNN with LT heads trains and resumes (CPU)."""

from __future__ import annotations

import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from test_heads_predictors import register_counts_dataset

from lt_detectron.config import add_lt_config, merge_config_file
from lt_detectron.modeling import load_stock_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASE = os.path.join(REPO, "configs", "demo", "lt_shapes_base.yaml")
COUNTS = [50, 20, 9, 4, 2, 1]


def model_cfg(roi_heads: str = "StandardROIHeads", classifier: str = "softmax"):
    cfg = get_cfg()
    add_lt_config(cfg)
    merge_config_file(cfg, DEMO_BASE)  # the demo's narrow ResNet-FPN Mask R-CNN
    cfg.DATASETS.TRAIN = (register_counts_dataset("heads_ckpt_counts", COUNTS),)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(COUNTS)
    cfg.MODEL.RESNETS.DEPTH = 10
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.NAME = roi_heads
    cfg.MODEL.LT.BOX_CLASSIFIER = classifier
    cfg.MODEL.LT.LDA.WINDOW = 4
    return cfg


def build(cfg, seed: int):
    torch.manual_seed(seed)
    return build_model(cfg)


@pytest.fixture(scope="module")
def stock_checkpoint(tmp_path_factory):
    """A stock Detectron2 Mask R-CNN (StandardROIHeads) with random weights, saved like DetectionCheckpointer."""
    model = build(model_cfg(), seed=1)
    path = tmp_path_factory.mktemp("stock") / "model_final.pth"
    DetectionCheckpointer(model, save_dir=str(path.parent)).save("model_final")
    return str(path), {k: v.clone() for k, v in model.state_dict().items()}


def test_stock_checkpoint_into_lda_model_reports_every_key(stock_checkpoint):
    path, stock = stock_checkpoint
    model = build(model_cfg("LTROIHeads", "lda"), seed=2)
    report = load_stock_checkpoint(model, path)
    state = model.state_dict()
    head = "roi_heads.box_predictor."
    C = len(COUNTS)

    # Everything Mask R-CNN shares with the stock model loads unchanged.
    for prefix in (
        "backbone.",
        "proposal_generator.",
        "roi_heads.box_head.",
        head + "bbox_pred.",
        "roi_heads.mask_head.",
    ):
        keys = [k for k in stock if k.startswith(prefix)]
        assert keys and all(k in report.loaded for k in keys), prefix
        assert all(torch.equal(state[k], stock[k]) for k in keys), prefix
    # The new classifiers start from the stock classifier.
    derived = dict(report.from_stock)
    assert set(derived) == {
        head + f"{n}.{p}" for n in ("unbalanced_score", "balanced_score", "fgbg_score") for p in ("weight", "bias")
    }
    for name in ("unbalanced_score", "balanced_score"):
        assert torch.equal(state[head + name + ".weight"], stock[head + "cls_score.weight"][:C])
        assert torch.equal(state[head + name + ".bias"], stock[head + "cls_score.bias"][:C])
    assert torch.equal(state[head + "fgbg_score.weight"][1], stock[head + "cls_score.weight"][C])
    torch.testing.assert_close(state[head + "fgbg_score.weight"][0], stock[head + "cls_score.weight"][:C].mean(0))
    # The projection head and the balancer state are new; the consumed cls_score is not "unexpected".
    assert set(report.missing) == {head + "projection.weight", head + "projection.bias", head + "_extra_state"}
    assert report.unexpected == [] and report.incorrect_shapes == []
    table = report.table()
    assert "initialised from stock" in table and "missing (fresh init)" in table and "backbone.bottom_up" in table


def test_stock_checkpoint_into_c_plus_1_heads(stock_checkpoint):
    path, stock = stock_checkpoint
    report = load_stock_checkpoint(build(model_cfg("LTROIHeads", "balanced_softmax"), seed=3), path)
    assert report.missing == [] and report.unexpected == [] and report.from_stock == []
    assert set(report.loaded) == set(stock)
    report = load_stock_checkpoint(build(model_cfg("LTROIHeads", "ldam"), seed=3), path, log=False)
    assert report.unexpected == ["roi_heads.box_predictor.cls_score.bias"]  # the cosine classifier has no bias
    assert "roi_heads.box_predictor.cls_score.weight" in report.loaded


def test_class_count_mismatch_is_reported_as_shape_mismatch(stock_checkpoint):
    path, _ = stock_checkpoint
    cfg = model_cfg("LTROIHeads", "lda")
    cfg.DATASETS.TRAIN = (register_counts_dataset("heads_ckpt_counts4", COUNTS[:4]),)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 4
    report = load_stock_checkpoint(build(cfg, seed=4), path, log=False)
    assert "roi_heads.box_predictor.cls_score.weight" in report.unexpected
    assert "roi_heads.box_predictor.balanced_score.weight" in report.missing
    assert any(k == "roi_heads.box_predictor.bbox_pred.weight" for k, _, _ in report.incorrect_shapes)


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for i in range(2):
        inst = Instances((128, 128))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 50.0, 60.0], [60.0, 40.0, 110.0, 100.0]]))
        inst.gt_classes = torch.tensor([0, 5 - i])
        masks = torch.zeros(2, 128, 128, dtype=torch.bool)
        masks[0, 10:60, 10:50] = True
        masks[1, 40:100, 60:110] = True
        inst.gt_masks = BitMasks(masks)
        inputs.append(
            {"image": (torch.rand(3, 128, 128, generator=g) * 255), "instances": inst, "height": 128, "width": 128}
        )
    return inputs


def _train(model, iterations, start_iter=0):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.0)
    model.train()
    out = []
    with EventStorage(start_iter) as storage:
        for it in range(start_iter, start_iter + iterations):
            torch.manual_seed(1000 + it)  # the RPN / RoI samplers draw random numbers: same draws per iteration
            losses = model(_batch(it))
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            out.append({k: float(v.detach()) for k, v in losses.items()})
            storage.step()
    return out


def test_mask_rcnn_with_lda_heads_resumes_like_an_uninterrupted_run(tmp_path):
    """Train 2 iterations, checkpoint, resume for 1 more: the same losses and alpha as 3 iterations straight."""
    cfg = model_cfg("LTROIHeads", "lda")
    straight = build(cfg, seed=5)
    history = _train(straight, 3)
    assert all(v == v for losses in history for v in losses.values())
    assert {"loss_fgbg", "loss_cls_balanced", "loss_mask", "loss_rpn_cls"} <= set(history[0])

    first = build(cfg, seed=5)
    _train(first, 2)
    DetectionCheckpointer(first, save_dir=str(tmp_path)).save("model_0000001")
    resumed = build(cfg, seed=6)  # different init: everything must come from the checkpoint
    DetectionCheckpointer(resumed).load(str(tmp_path / "model_0000001.pth"))
    assert (
        resumed.roi_heads.box_predictor.risk_balancer.state_dict()
        == first.roi_heads.box_predictor.risk_balancer.state_dict()
    )
    last = _train(resumed, 1, start_iter=2)
    for key, value in history[2].items():
        assert last[0][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert resumed.roi_heads.box_predictor.risk_balancer.alpha == pytest.approx(
        straight.roi_heads.box_predictor.risk_balancer.alpha
    )


DEMO_HEADS = ["lda", "lade", "cb", "focal", "ldam", "balanced_softmax", "fed"]


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.parametrize("head", DEMO_HEADS)
def test_demo_head_configs_differ_from_the_base_only_in_the_head_and_build(head):
    base = get_cfg()
    add_lt_config(base)
    merge_config_file(base, DEMO_BASE)
    cfg = get_cfg()
    add_lt_config(cfg)
    merge_config_file(cfg, os.path.join(REPO, "configs", "demo", f"lt_shapes_{head}.yaml"))
    a, b = _flatten(base), _flatten(cfg)
    changed = {k for k in a if a[k] != b[k]}
    head_keys = (
        "MODEL.ROI_HEADS.NAME",
        "MODEL.LT.",
        "MODEL.ROI_BOX_HEAD.USE_",
        "MODEL.ROI_BOX_HEAD.FED_",
        "OUTPUT_DIR",
    )
    assert changed and all(k.startswith(head_keys) for k in changed), changed
    assert cfg.MODEL.ROI_HEADS.NAME == "LTROIHeads"
    # It builds (with a stand-in 30-class training set instead of generating lt_shapes).
    cfg.DATASETS.TRAIN = (register_counts_dataset("heads_demo_counts", list(range(30, 0, -1))),)
    cfg.MODEL.RESNETS.DEPTH = 10
    model = build_model(cfg)
    assert type(model.roi_heads).__name__ == "LTROIHeads"


@pytest.mark.parametrize("head", ["lda", "lade", "cb", "balanced_softmax", "fed"])
def test_lvis_configs_use_the_lda_lvis_recipe(head):
    cfg = get_cfg()
    add_lt_config(cfg)
    merge_config_file(cfg, os.path.join(REPO, "configs", f"lvis_{head}.yaml"))
    iters_per_epoch = 100170 / cfg.SOLVER.IMS_PER_BATCH  # LVIS v1 train images
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR) == (8, 0.01)
    assert cfg.SOLVER.MAX_ITER == round(12 * iters_per_epoch)
    assert cfg.SOLVER.STEPS == (round(8 * iters_per_epoch), round(11 * iters_per_epoch))
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800) and cfg.INPUT.MIN_SIZE_TEST == 800
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler" and cfg.DATALOADER.REPEAT_THRESHOLD == 0.001
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203 and cfg.MODEL.ROI_HEADS.NAME == "LTROIHeads"
    assert cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS == (head == "fed")
