"""LTROIHeads and its box predictors on synthetic FPN features (CPU, tiny shapes, a few seconds in all)."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lt_detectron.config import add_lt_config
from lt_detectron.losses import adjust_logits
from lt_detectron.modeling import BOX_PREDICTOR_REGISTRY, LTROIHeads, StockBoxPredictor

COUNTS = [40, 12, 5, 2, 1]  # instances per class of the tiny training set
NUM_CLASSES = len(COUNTS)
IMAGE_SIZE = 64
FEATURE_SHAPE = {"p2": ShapeSpec(channels=8, stride=4)}


def register_counts_dataset(name: str, counts) -> str:
    """A registered dataset whose annotations have exactly `counts[c]` instances of class c."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

    def records():
        return [
            {"file_name": f"{c}_{i}.png", "image_id": 100 * c + i, "annotations": [{"category_id": c}]}
            for c, n in enumerate(counts)
            for i in range(n)
        ]

    DatasetCatalog.register(name, records)
    MetadataCatalog.get(name).set(
        thing_classes=[f"shape{c}" for c in range(len(counts))],
        class_image_count=[{"id": c + 1, "image_count": n} for c, n in enumerate(counts)],  # read by the fed loss
    )
    return name


def tiny_cfg(classifier: str = "softmax", counts=COUNTS, **overrides):
    cfg = get_cfg()
    add_lt_config(cfg)
    cfg.DATASETS.TRAIN = (register_counts_dataset(f"heads_test_{len(counts)}_{sum(counts)}", counts),)
    cfg.MODEL.ROI_HEADS.NAME = "LTROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(counts)
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2"]
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 4
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.LT.BOX_CLASSIFIER = classifier
    cfg.MODEL.LT.LDA.PROJ_DIM = 8
    cfg.MODEL.LT.LDA.WINDOW = 3
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def build_heads(cfg) -> LTROIHeads:
    torch.manual_seed(0)
    return build_roi_heads(cfg, FEATURE_SHAPE)


def synthetic_batch(num_images: int = 2, with_objects: bool = True, seed: int = 0, classes=(0, 3, 4)):
    """FPN features, RPN proposals and ground truth (three objects of `classes`) for 64x64 images."""
    g = torch.Generator().manual_seed(seed)
    features = {"p2": torch.randn(num_images, 8, IMAGE_SIZE // 4, IMAGE_SIZE // 4, generator=g)}
    proposals, targets = [], []
    for i in range(num_images):
        xy = torch.rand(20, 2, generator=g) * 40
        wh = 8 + torch.rand(20, 2, generator=g) * 16
        p = Instances((IMAGE_SIZE, IMAGE_SIZE))
        p.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        p.objectness_logits = torch.randn(20, generator=g)
        proposals.append(p)
        t = Instances((IMAGE_SIZE, IMAGE_SIZE))
        if with_objects:
            t.gt_boxes = Boxes(
                torch.tensor([[4.0, 4.0, 30.0, 30.0], [30.0, 20.0, 60.0, 50.0], [10.0, 36.0, 28.0, 60.0]])
            )
            t.gt_classes = torch.tensor(classes) if i == 0 else torch.tensor(classes[::-1])
        else:
            t.gt_boxes = Boxes(torch.zeros(0, 4))
            t.gt_classes = torch.zeros(0, dtype=torch.long)
        targets.append(t)
    return features, proposals, targets


def train_steps(heads, steps: int = 2, with_objects: bool = True, classes=(0, 3, 4)):
    """`steps` SGD iterations of the ROI heads; returns the loss dicts."""
    optimizer = torch.optim.SGD(heads.parameters(), lr=0.01)
    heads.train()
    history = []
    with EventStorage(0) as storage:
        for step in range(steps):
            features, proposals, targets = synthetic_batch(with_objects=with_objects, seed=step, classes=classes)
            features["p2"].requires_grad_(True)
            _, losses = heads(None, features, proposals, targets)
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            grads = [p.grad for p in heads.parameters() if p.grad is not None] + [features["p2"].grad]
            assert all(torch.isfinite(g).all() for g in grads), "NaN/inf gradient"
            optimizer.step()
            history.append({k: float(v) for k, v in losses.items()})
            storage.step()
        scalars = {k: v[0] for k, v in storage.latest().items()}
    return history, scalars


@pytest.mark.parametrize("classifier", sorted(BOX_PREDICTOR_REGISTRY.names()))
def test_every_classifier_trains_two_iterations_with_finite_losses(classifier):
    heads = build_heads(tiny_cfg(classifier))
    before = {k: v.clone() for k, v in heads.box_predictor.named_parameters()}
    history, scalars = train_steps(heads, steps=2)
    for losses in history:
        assert "loss_box_reg" in losses
        assert all(math.isfinite(v) for v in losses.values()), losses
    # The losses reach the predictor: box regression and the classifier(s) were updated.
    moved = {k for k, v in heads.box_predictor.named_parameters() if not torch.equal(v, before[k])}
    assert "bbox_pred.weight" in moved
    assert moved & {"cls_score.weight", "unbalanced_score.weight", "fgbg_score.weight"}, moved
    if classifier != "softmax":
        assert 0.0 < scalars["lt/fg_fraction"] < 1.0


@pytest.mark.parametrize("classifier", sorted(BOX_PREDICTOR_REGISTRY.names()))
def test_batch_without_foreground_gives_finite_losses_and_gradients(classifier):
    heads = build_heads(tiny_cfg(classifier))
    history, _ = train_steps(heads, steps=1, with_objects=False)
    assert all(math.isfinite(v) for v in history[0].values()), history[0]
    assert history[0]["loss_box_reg"] == 0.0


@pytest.mark.parametrize("classifier", sorted(BOX_PREDICTOR_REGISTRY.names()))
def test_inference_returns_detections(classifier):
    heads = build_heads(tiny_cfg(classifier, **{"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0}))
    heads.eval()
    features, proposals, _ = synthetic_batch()
    with torch.no_grad():
        instances, _ = heads(None, features, proposals)
    assert len(instances) == 2 and len(instances[0]) > 0
    assert ((instances[0].pred_classes >= 0) & (instances[0].pred_classes < NUM_CLASSES)).all()
    assert ((instances[0].scores >= 0) & (instances[0].scores <= 1)).all()


@pytest.mark.parametrize("classifier", sorted(BOX_PREDICTOR_REGISTRY.names()))
def test_per_roi_loss_is_the_unreduced_training_loss(classifier):
    """The meta hook's view: for per-example heads, mean over RoIs of per_roi_classification_loss == loss_cls."""
    predictor = build_heads(tiny_cfg(classifier)).box_predictor
    gt = torch.tensor([0, 1, 5, 5, 4, 2])
    boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(len(gt), 1))
    proposals = [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=boxes, gt_boxes=boxes, gt_classes=gt)]
    predictions = predictor(torch.randn(len(gt), 16))
    weights = torch.linspace(0.5, 2.0, len(gt))
    assert isinstance(predictor.per_example, bool)
    if not predictor.per_example:  # batch-level losses (divergence, a_t; EQLv2's running statistics)
        assert classifier in ("lda", "eqlv2")
        with pytest.raises(ValueError, match="takes no roi_weights"):
            predictor.losses(predictions, proposals, roi_weights=weights)
        return
    with EventStorage(0):  # Detectron2's stock losses() logs its accuracy there
        losses = predictor.losses(predictions, proposals)
        # Not training: Seesaw's cumulative counts stay those per_roi_classification_loss reads below.
        weighted = predictor.train(False).losses(predictions, proposals, roi_weights=weights)
    # After losses(): Seesaw's cumulative counts include the batch, as they did inside it.
    per_roi = predictor.per_roi_classification_loss(predictions[0], gt)
    assert per_roi.shape == (len(gt),) and torch.isfinite(per_roi).all()
    loss_cls = sum(v for k, v in losses.items() if k.startswith("loss_cls"))
    torch.testing.assert_close(per_roi.mean(), loss_cls)
    torch.testing.assert_close(
        sum(v for k, v in weighted.items() if k.startswith("loss_cls")), (weights * per_roi).mean()
    )
    assert weighted["loss_box_reg"] == losses["loss_box_reg"]


def test_roi_reweighter_weights_reach_the_box_classification_loss():
    """LTROIHeads asks its roi_reweighter in training; the box predictor weights loss_cls with the answer."""
    plain, _ = train_steps(build_heads(tiny_cfg("softmax")), steps=1)
    heads = build_heads(tiny_cfg("softmax"))
    asked = []

    def double(predictor, box_features, predictions, proposals):
        asked.append((predictor is heads.box_predictor, box_features.shape[0], sum(len(p) for p in proposals)))
        return torch.full((box_features.shape[0],), 2.0)

    heads.roi_reweighter = double
    weighted, _ = train_steps(heads, steps=1)
    assert len(asked) == 1 and asked[0][0] and asked[0][1] == asked[0][2]
    assert weighted[0]["loss_cls"] == pytest.approx(2 * plain[0]["loss_cls"], rel=1e-6)
    assert weighted[0]["loss_box_reg"] == plain[0]["loss_box_reg"]


def test_stock_softmax_is_detectron2_predictor_with_the_same_state_dict():
    heads = build_heads(tiny_cfg("softmax"))
    assert isinstance(heads.box_predictor, StockBoxPredictor)
    assert set(heads.box_predictor.state_dict()) == {
        "cls_score.weight",
        "cls_score.bias",
        "bbox_pred.weight",
        "bbox_pred.bias",
    }


def test_sigmoid_fed_loss_still_works_through_softmax_option():
    cfg = tiny_cfg("softmax", **{"MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": True, "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": True})
    cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 3
    heads = build_heads(cfg)
    history, _ = train_steps(heads, steps=1)
    assert math.isfinite(history[0]["loss_cls"])


def test_lade_terms_sum_to_the_library_lade_loss():
    from lt_detectron.losses import lade_loss

    predictor = build_heads(tiny_cfg("lade", **{"MODEL.LT.LADE.ALPHA": 0.3})).box_predictor
    scores = torch.randn(8, NUM_CLASSES + 1)
    gt = torch.tensor([0, 0, 5, 5, 5, 3, 4, 1])
    boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(8, 1))
    proposals = [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=boxes, gt_boxes=boxes, gt_classes=gt)]
    losses = predictor.losses((scores, torch.zeros(8, 4 * NUM_CLASSES)), proposals)
    expected = lade_loss(scores, gt, predictor.source_prior, alpha=0.3, lam=0.1)
    torch.testing.assert_close(losses["loss_cls"] + losses["loss_lader"], expected)


# --- background decision and target prior (docs/methods.md#pc-softmax) -----------------------------------------------
def test_source_prior_gives_background_the_sampler_fraction():
    cfg = tiny_cfg("balanced_softmax", **{"MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25})
    predictor = build_heads(cfg).box_predictor
    expected_fg = 0.25 * torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    torch.testing.assert_close(predictor.source_prior[:-1].double(), expected_fg, rtol=1e-6, atol=1e-7)
    assert predictor.source_prior[-1].item() == pytest.approx(0.75)
    cfg = tiny_cfg("balanced_softmax", **{"MODEL.LT.BACKGROUND_PRIOR": 0.9})
    assert build_heads(cfg).box_predictor.source_prior[-1].item() == pytest.approx(0.9)


def test_cb_weights_background_one_and_foreground_normalised():
    predictor = build_heads(tiny_cfg("cb")).box_predictor
    w = predictor.class_weight
    assert w[-1].item() == 1.0
    assert w[:-1].sum().item() == pytest.approx(NUM_CLASSES, rel=1e-5)
    assert (w[:-2] <= w[1:-1]).all()  # rarer classes weigh more


def test_ldam_background_margin_is_zero():
    from lt_detectron.losses import ldam_margins

    predictor = build_heads(tiny_cfg("ldam")).box_predictor
    margins = predictor.margins
    assert margins.shape == (NUM_CLASSES + 1,)
    assert margins[-1].item() == 0.0
    assert margins[:-1].max().item() == pytest.approx(0.5)
    expected = ldam_margins(predictor.class_counts.double().clamp_min(1), predictor.max_margin)
    assert torch.allclose(margins[:-1].double(), expected, rtol=1e-6)


def test_ldam_drw_switches_on_at_the_configured_iteration():
    predictor = build_heads(tiny_cfg("ldam", **{"MODEL.LT.LDAM.DRW_START_ITER": 10})).box_predictor
    with EventStorage(9):
        assert predictor._drw_weight() is None
    with EventStorage(10):
        weight = predictor._drw_weight()
    assert weight.shape == (NUM_CLASSES + 1,) and weight[-1].item() == 1.0
    assert weight[:-1].sum().item() == pytest.approx(NUM_CLASSES, rel=1e-5)
    assert weight[NUM_CLASSES - 1] > weight[0]


@pytest.mark.parametrize("classifier", ["balanced_softmax", "lade"])
def test_target_prior_switch_changes_scores_as_pc_softmax(classifier, tmp_path):
    predictor = build_heads(tiny_cfg(classifier)).box_predictor.eval()
    scores = torch.randn(7, NUM_CLASSES + 1)
    proposals = [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=Boxes(torch.zeros(7, 4)))]
    probs = {}
    for spec in ("uniform", "source"):
        predictor.set_target_prior(spec)
        probs[spec] = predictor.predict_probs((scores, None), proposals)[0]
    b = predictor.source_prior[-1]
    uniform_target = torch.cat([(1 - b) * torch.full((NUM_CLASSES,), 1.0 / NUM_CLASSES), b[None]])
    # "source" is the training posterior softmax(z + log p_s); the uniform prior re-weights it exactly by
    # Hong et al. 2021 eq. 7: z_c - log p_s(c) + log p_t(c).
    torch.testing.assert_close(probs["source"], torch.softmax(scores + predictor.source_prior.log(), dim=1))
    pc = adjust_logits(scores + predictor.source_prior.log(), predictor.source_prior, uniform_target).softmax(dim=1)
    torch.testing.assert_close(probs["uniform"], pc)
    # The background keeps its mass relative to the source posterior only through z: rare classes gain.
    ratio = probs["uniform"][:, :-1] / probs["source"][:, :-1]
    assert (ratio[:, -1] > ratio[:, 0]).all()
    # A json prior equal to the source counts gives the "source" scores.
    path = tmp_path / "prior.json"
    path.write_text(json.dumps([c * 3 for c in COUNTS]))
    predictor.set_target_prior(str(path))
    torch.testing.assert_close(predictor.predict_probs((scores, None), proposals)[0], probs["source"])


def test_pc_softmax_is_posthoc_prior_correction_of_the_stock_head():
    from lt_detectron.losses import pc_softmax

    stock = build_heads(tiny_cfg("softmax")).box_predictor
    predictor = build_heads(tiny_cfg("pc_softmax")).box_predictor.eval()
    predictor.load_state_dict(stock.state_dict())  # the same weights: a trained baseline evaluates post hoc
    x = torch.randn(5, 16)
    proposals = [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=Boxes(torch.zeros(5, 4)))]
    scores = stock(x)[0]
    probs = predictor.predict_probs(predictor(x), proposals)[0]
    b = predictor.source_prior[-1]
    target = torch.cat([(1 - b) * torch.full((NUM_CLASSES,), 1.0 / NUM_CLASSES), b[None]])
    torch.testing.assert_close(probs, pc_softmax(scores, predictor.source_prior, target))
    # The background prior cancels: the fg columns move by log(q_c / (n_c / N)) whatever b is.
    log_ratio = probs.log() - torch.softmax(scores, dim=1).log()
    expected = -torch.log(torch.tensor(COUNTS) / sum(COUNTS)) + math.log(1.0 / NUM_CLASSES)
    shift = log_ratio[:, :-1] - expected
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), rtol=0, atol=1e-5)
    predictor.set_target_prior("source")
    torch.testing.assert_close(predictor.predict_probs(predictor(x), proposals)[0], torch.softmax(scores, dim=1))


def test_target_prior_json_errors_name_the_file(tmp_path):
    predictor = build_heads(tiny_cfg("balanced_softmax")).box_predictor
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([1.0, 2.0]))
    with pytest.raises(ValueError, match="bad.json.*5 non-negative"):
        predictor.set_target_prior(str(bad))
    with pytest.raises(ValueError, match="TEST_TARGET_PRIOR"):
        predictor.set_target_prior("balanced")


# --- LDA -----------------------------------------------------------------------------------------------
def test_lda_inference_fusion_equals_formula():
    heads = build_heads(tiny_cfg("lda")).eval()
    predictor = heads.box_predictor
    x = torch.randn(6, 16)
    scores, deltas = predictor(x)
    proposals = [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=Boxes(torch.zeros(6, 4)))]
    probs = predictor.predict_probs((scores, deltas), proposals)[0]
    p_fg = torch.softmax(predictor.fgbg_score(x), dim=1)[:, 0]
    expected = p_fg[:, None] * torch.softmax(predictor.balanced_score(x), dim=1)
    torch.testing.assert_close(probs[:, :-1], expected)
    torch.testing.assert_close(probs[:, -1], 1 - p_fg)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))


def test_lda_losses_follow_methods_total_and_log_telemetry():
    cfg = tiny_cfg("lda", **{"MODEL.LT.LDA.LAMBDA_U": 0.5, "MODEL.LT.LDA.LAMBDA_B": 2.0, "MODEL.LT.LDA.LAMBDA_D": 0.1})
    heads = build_heads(cfg)
    history, scalars = train_steps(heads, steps=2)
    predictor = heads.box_predictor
    assert set(history[1]) == {
        "loss_fgbg",
        "loss_cls_unbalanced",
        "loss_cls_balanced",
        "loss_lda_intra",
        "loss_lda_inter",
        "loss_box_reg",
    }
    alpha = scalars["lda/alpha"]
    assert alpha == pytest.approx(predictor.risk_balancer.alpha)
    assert history[1]["loss_cls_balanced"] == pytest.approx(
        2.0 * alpha * scalars["lda/raw_balanced"], rel=1e-5, abs=1e-9
    )
    assert history[1]["loss_cls_unbalanced"] == pytest.approx(0.5 * scalars["lda/raw_unbalanced"], rel=1e-5)
    assert history[1]["loss_lda_inter"] == pytest.approx(0.1 * scalars["lda/raw_inter"], rel=1e-5, abs=1e-9)
    for key in ("lda/acc_unbalanced", "lda/acc_balanced", "lda/acc_gap", "lt/fg_fraction", "lda/raw_fgbg"):
        assert key in scalars
    assert len(predictor.risk_balancer.state_dict()["acc_unbalanced"]) == 2


@pytest.mark.parametrize("feature_grad", [True, False])
def test_lda_balanced_feature_grad_switch(feature_grad):
    """BALANCED_FEATURE_GRAD False: L_b trains the balanced classifier only, never the box-head feature."""
    cfg = tiny_cfg("lda", **{"MODEL.LT.LDA.BALANCED_FEATURE_GRAD": feature_grad})
    heads = build_heads(cfg).train()
    predictor = heads.box_predictor
    predictor.risk_balancer.update(90.0, 10.0)  # a_t > 0, so L_b has a gradient at all
    features, proposals, targets = synthetic_batch()
    with EventStorage(0):
        _, losses = heads(None, features, proposals, targets)
    box_head_weights = [p for p in heads.box_head.parameters()]
    grads = torch.autograd.grad(
        losses["loss_cls_balanced"], box_head_weights + [predictor.balanced_score.weight], allow_unused=True
    )
    head_grad_norm = sum(float(g.abs().sum()) for g in grads[:-1] if g is not None)
    assert float(grads[-1].abs().sum()) > 0  # the balanced classifier always learns from L_b
    assert (head_grad_norm > 0) == feature_grad


def test_box_head_dead_fraction_is_logged_and_collapse_detected(caplog):
    heads = build_heads(tiny_cfg("softmax"))
    _, scalars = train_steps(heads, steps=1)
    assert 0.0 <= scalars["lt/box_head_dead_fraction"] < 1.0
    last_fc = [m for m in heads.box_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a collapsed head: every unit's pre-activation is negative
        last_fc.weight.zero_()
        last_fc.bias.fill_(-1.0)
    with caplog.at_level("WARNING"):
        _, scalars = train_steps(heads, steps=1)
    assert scalars["lt/box_head_dead_fraction"] == 1.0
    assert "box head has collapsed" in caplog.text


def test_lda_balancer_state_survives_checkpoint_round_trip():
    from detectron2.checkpoint import DetectionCheckpointer

    heads = build_heads(tiny_cfg("lda"))
    train_steps(heads, steps=2)
    balancer = heads.box_predictor.risk_balancer
    balancer.update(90.0, 40.0)  # make the window non-trivial
    buffer = io.BytesIO()
    torch.save({"model": heads.state_dict()}, buffer)

    restored = build_heads(tiny_cfg("lda"))
    assert restored.box_predictor.risk_balancer.alpha == 0.0
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    incompatible = DetectionCheckpointer(restored)._load_model(checkpoint)
    assert not incompatible.missing_keys and not incompatible.incorrect_shapes
    assert restored.box_predictor.risk_balancer.state_dict() == balancer.state_dict()
    # The next update gives the same alpha as in the uninterrupted run.
    assert restored.box_predictor.risk_balancer.update(70.0, 55.0) == balancer.update(70.0, 55.0)


# --- configuration errors -------------------------------------------------------------------------------
def test_unknown_box_classifier_lists_valid_names():
    with pytest.raises(ValueError, match="BOX_CLASSIFIER = 'adl'.*valid names: .*balanced_softmax.*lda"):
        build_heads(tiny_cfg("lda"[::-1]))


def test_num_classes_mismatch_is_a_clear_error():
    cfg = tiny_cfg("cb")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 7
    with pytest.raises(ValueError, match="NUM_CLASSES is 7 .* have 5 categories"):
        build_heads(cfg)


def test_sigmoid_ce_with_lt_classifier_is_rejected():
    with pytest.raises(ValueError, match="USE_SIGMOID_CE"):
        build_heads(tiny_cfg("cb", **{"MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": True}))


@pytest.mark.parametrize("classifier", ["cb", "ldam", "balanced_softmax", "lade", "lda", "cb_focal"])
def test_zero_count_class_errors_or_warns_per_policy(classifier):
    counts = [30, 6, 0, 2]
    with pytest.raises(ValueError, match=r"never occur in training.*category id 3 \(shape2\).*ZERO_COUNT_POLICY"):
        build_heads(tiny_cfg(classifier, counts=counts))
    with pytest.warns(UserWarning, match="shape2"):
        heads = build_heads(tiny_cfg(classifier, counts=counts, **{"MODEL.LT.ZERO_COUNT_POLICY": "warn"}))
    for buffer in heads.box_predictor.buffers():
        assert torch.isfinite(buffer).all()
    history, _ = train_steps(heads, steps=2, classes=(0, 1, 3))
    assert all(math.isfinite(v) for losses in history for v in losses.values())
