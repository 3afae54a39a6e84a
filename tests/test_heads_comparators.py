"""Seesaw / EQLv2 box predictors, the cosine classifier option, NorCal at inference, LDA's new options and the
repeat-factor-aware class counts (CPU, tiny shapes)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from test_heads_predictors import COUNTS, IMAGE_SIZE, NUM_CLASSES, build_heads, register_counts_dataset, tiny_cfg

from lt_detectron import losses as L
from lt_detectron.data.stats import sampled_instance_counts
from lt_detectron.layers import CosineLinear
from lt_detectron.modeling import NorCal
from lt_detectron.modeling.class_counts import read_class_counts


def _proposals(gt: list) -> list:
    boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(len(gt), 1))
    return [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=boxes, gt_boxes=boxes, gt_classes=torch.tensor(gt))]


GT = [0, 1, 4, 4, NUM_CLASSES, NUM_CLASSES, 2]


def test_seesaw_head_accumulates_counts_before_its_loss_and_saves_them():
    predictor = build_heads(tiny_cfg("seesaw")).box_predictor.train()
    assert predictor.cls_score.out_features == NUM_CLASSES + 2
    scores, deltas = predictor(torch.randn(len(GT), 16))
    with EventStorage(0):
        losses = predictor.losses((scores, deltas), _proposals(GT))
    assert predictor.cumulative_counts.tolist() == [1, 1, 1, 0, 2]  # this batch's foreground RoIs
    # The class term is the library's seesaw_loss with the counts including the batch, over all sampled RoIs.
    fg = torch.tensor(GT) < NUM_CLASSES
    expected = L.seesaw_loss(scores[fg, :NUM_CLASSES], torch.tensor(GT)[fg], torch.tensor([1.0, 1, 1, 0, 2]))
    torch.testing.assert_close(losses["loss_cls_classes"], expected * int(fg.sum()) / len(GT))
    probs = predictor.predict_probs((scores, deltas), _proposals(GT))[0]
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(GT)))
    buffer = io.BytesIO()
    torch.save(predictor.state_dict(), buffer)
    restored = build_heads(tiny_cfg("seesaw")).box_predictor
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    assert restored.cumulative_counts.tolist() == [1, 1, 1, 0, 2]


def test_eqlv2_head_is_the_library_loss_and_scores_with_the_background_sigmoid():
    predictor = build_heads(tiny_cfg("eqlv2")).box_predictor.train()
    reference = L.EQLv2Loss(NUM_CLASSES)
    scores, deltas = predictor(torch.randn(len(GT), 16))
    for _ in range(2):  # the second step uses the statistics of the first
        with EventStorage(0):
            loss = predictor.losses((scores, deltas), _proposals(GT))["loss_cls"]
        torch.testing.assert_close(loss, reference(scores, torch.tensor(GT)))
    assert "eqlv2.pos_grad" in predictor.state_dict() and int(predictor.eqlv2.num_batches) == 2
    sig = scores.sigmoid()
    probs = predictor.predict_probs((scores, deltas), _proposals(GT))[0]
    torch.testing.assert_close(probs[:, :NUM_CLASSES], sig[:, :NUM_CLASSES] * (1 - sig[:, NUM_CLASSES:]))


def test_cosine_option_replaces_the_linear_classifier_and_loads_a_stock_weight():
    stock = build_heads(tiny_cfg("softmax")).box_predictor
    cosine = build_heads(tiny_cfg("softmax", **{"MODEL.LT.COSINE.ENABLED": True})).box_predictor
    assert isinstance(cosine.cls_score, CosineLinear) and cosine.cls_score.scale == 20.0
    cosine.cls_score.load_state_dict({"weight": stock.cls_score.weight.detach()})
    x = torch.randn(3, 16)
    expected = (
        20.0 * torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(stock.cls_score.weight, dim=1).T
    )
    torch.testing.assert_close(cosine(x)[0], expected)
    for head in ("lda", "ldam"):
        with pytest.raises(ValueError, match="MODEL.LT.COSINE.ENABLED applies to"):
            build_heads(tiny_cfg(head, **{"MODEL.LT.COSINE.ENABLED": True}))


def test_norcal_at_inference_equals_the_library_on_logits_and_refuses_sigmoid_heads():
    predictor = build_heads(
        tiny_cfg("softmax", **{"TEST.LT_CALIBRATION": "norcal", "TEST.LT_CALIBRATION_GAMMA": 0.7})
    ).box_predictor
    assert isinstance(predictor.score_calibration, NorCal)
    scores, deltas = predictor(torch.randn(len(GT), 16))
    probs = predictor.predict_probs((scores, deltas), _proposals(GT))[0]
    torch.testing.assert_close(probs, L.norcal_probs(scores, torch.tensor(COUNTS, dtype=torch.float32), 0.7))
    for head, extra in (("eqlv2", {}), ("softmax", {"MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": True})):
        with pytest.raises(ValueError, match="scores classes independently"):
            build_heads(tiny_cfg(head, **{"TEST.LT_CALIBRATION": "norcal", **extra}))


def test_lda_unbalanced_loss_is_normalised_by_all_sampled_rois():
    cfg_sampled = tiny_cfg("lda")
    cfg_foreground = tiny_cfg("lda", **{"MODEL.LT.LDA.UNBALANCED_NORM": "foreground"})
    torch.manual_seed(0)
    sampled = build_heads(cfg_sampled).box_predictor.train()
    torch.manual_seed(0)
    foreground = build_heads(cfg_foreground).box_predictor.train()
    x = torch.randn(len(GT), 16)
    with EventStorage(0):
        a = sampled.losses(sampled(x), _proposals(GT))["loss_cls_unbalanced"]
        b = foreground.losses(foreground(x), _proposals(GT))["loss_cls_unbalanced"]
    num_fg = sum(g < NUM_CLASSES for g in GT)
    torch.testing.assert_close(a, b * num_fg / len(GT))


def test_risk_balancer_ramps_over_a_zero_filled_window_and_can_be_fixed():
    ramp = L.RiskBalancer(gamma=1.0, window=4)
    recorded = L.RiskBalancer(gamma=1.0, window=4, alpha_ramp="recorded")
    for t in range(1, 6):
        a, b = ramp.update(60.0, 40.0), recorded.update(60.0, 40.0)
        assert a == pytest.approx(20.0 * min(t, 4) / 4) and b == pytest.approx(20.0)
    fixed = L.RiskBalancer(gamma=2.0, window=4, fixed_alpha=3.0)
    assert fixed.alpha == 3.0 and fixed.update(90.0, 10.0) == 3.0
    with pytest.raises(ValueError, match="alpha_ramp"):
        L.RiskBalancer(alpha_ramp="linear")


def test_sampled_instance_counts_follow_detectron2s_repeat_factors_with_empty_images():
    rng = np.random.default_rng(0)
    records = []
    for i in range(60):  # class 3 rare, class 0 frequent, some images without annotations
        ids = [] if i % 7 == 0 else list(rng.choice([0, 0, 0, 1, 2], size=rng.integers(1, 4)))
        if i in (5, 40):
            ids.append(3)
        records.append({"image_id": i, "annotations": [{"category_id": int(c)} for c in ids]})
    name = "rfs_counts_test"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    for sqrt in (True, False):
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(records, 0.1, sqrt=sqrt)
        expected = np.zeros(4)
        for factor, record in zip(factors.tolist(), records):
            for ann in record["annotations"]:
                expected[ann["category_id"]] += factor
        np.testing.assert_allclose(sampled_instance_counts([name], 4, 0.1, sqrt=sqrt), expected)
    raw = np.bincount([a["category_id"] for r in records for a in r["annotations"]], minlength=4)
    np.testing.assert_allclose(sampled_instance_counts([name], 4, 0.0), raw)
    assert sampled_instance_counts([name], 4, 0.1)[3] > raw[3]  # the rare class is seen more often


def test_class_count_source_sampled_instance_count_reaches_the_heads():
    cfg = tiny_cfg("lda", **{"MODEL.LT.CLASS_COUNT_SOURCE": "sampled_instance_count"})
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.5
    counts = read_class_counts(cfg)
    images = sum(COUNTS)
    expected = [n * max(1.0, math.sqrt(0.5 / (n / images))) for n in COUNTS]  # one instance per image
    np.testing.assert_allclose(counts, expected)
    cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
    np.testing.assert_allclose(read_class_counts(cfg), COUNTS)
    register_counts_dataset("unused", COUNTS)
