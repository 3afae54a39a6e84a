"""One implementation per concept: the layers and loss helpers that detection and classification share."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lt_detectron import losses as L
from lt_detectron.classification.config import ConfigError, load_config
from lt_detectron.layers import CosineLinear, cosine_logits, projection_head
from lt_detectron.meta import stage_two_start

COUNTS = [50.0, 20.0, 5.0, 1.0]


# ---- cosine classifier ---------------------------------------------------------------------------------------
def test_cosine_logits_are_cosines():
    x, w = torch.randn(6, 5), torch.randn(3, 5)
    expected = torch.stack([F.cosine_similarity(x, w[c].expand_as(x), dim=1) for c in range(3)], dim=1)
    torch.testing.assert_close(cosine_logits(x, w), expected)
    assert CosineLinear(5, 3).weight.shape == (3, 5)  # nn.Linear's layout


def test_uniform_renorm_init_draws_the_authors_classifier():
    torch.manual_seed(0)
    authors = torch.empty(8, 3).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)  # their (in, out) layout
    torch.manual_seed(0)
    assert torch.equal(CosineLinear(8, 3, init="uniform_renorm").weight, authors.t())


def test_old_classification_checkpoint_is_transposed_on_load():
    """A NormedLinear state dict from before the merge, (in, out) weight and no version, loads as (out, in)."""
    new = CosineLinear(4, 4, init="uniform_renorm")  # square: only the version tells the layouts apart
    old_weight = torch.randn(4, 4)
    new.load_state_dict({"weight": old_weight})  # a plain dict has no version metadata: an old checkpoint
    assert torch.equal(new.weight.detach(), old_weight.t())
    saved = new.state_dict()  # carries version 2: loads unchanged
    again = CosineLinear(4, 4, init="uniform_renorm")
    again.load_state_dict(saved)
    assert torch.equal(again.weight, new.weight)


def test_detection_checkpoint_layout_is_kept():
    head = CosineLinear(5, 3)  # init "normal": the detection head, whose layout never changed
    weight = torch.randn(3, 5)
    head.load_state_dict({"weight": weight})
    assert torch.equal(head.weight.detach(), weight)
    with pytest.raises(ValueError, match="init must be one of"):
        CosineLinear(5, 3, init="xavier")


def test_projection_head_kinds_and_keys():
    assert isinstance(projection_head("linear", 16, 8), torch.nn.Linear)
    assert set(projection_head("mlp", 16, 8).state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    with pytest.raises(ValueError, match="linear, mlp.*'conv'"):
        projection_head("conv", 16, 8)


# ---- LDA total loss ------------------------------------------------------------------------------------------
def _lda_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([0, 0, 1, 2, 2, 3, 1, 0])
    return torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g), torch.randn(8, 6, generator=g), y


@pytest.mark.parametrize("pair_weights", [False, True])
def test_lda_loss_is_equation_9(pair_weights):
    logits_u, logits_b, proj, y = _lda_batch()
    w = L.class_weights(COUNTS, kind="lda")
    intra, inter = L.lda_divergence(proj, y, margin=1.0, class_weights=w if pair_weights else None)
    loss_b = (w[y] * F.cross_entropy(logits_b, y, reduction="none")).sum()
    expected = 1.0 * F.cross_entropy(logits_u, y) + 2.0 * 0.7 * loss_b + 0.5 * (intra + inter)
    got = L.lda_loss(logits_u, logits_b, proj, y, w, 0.7, 1.0, 2.0, 0.5, pair_weights=pair_weights)
    torch.testing.assert_close(got, expected)
    weighted = L.weighted_lda_terms(L.lda_loss_terms(logits_u, logits_b, proj, y, w, 1.0, pair_weights), 0.7, 1, 2, 0.5)
    torch.testing.assert_close(sum(weighted.values()), expected)


def test_lda_loss_module_updates_its_balancer_then_uses_a_t():
    logits_u, logits_b, proj, y = _lda_batch()
    module = L.LDALoss(COUNTS, gamma=1.0, window=3, lambda_d=0.5)
    out = module(logits_u, logits_b, proj, y)
    acc_u, acc_b = L.accuracy_percent(logits_u, y), L.accuracy_percent(logits_b, y)
    assert out.alpha == max(0.0, acc_u - acc_b) and module.balancer.state_dict()["acc_unbalanced"] == [acc_u]
    expected = L.lda_loss(logits_u, logits_b, proj, y, module.balanced_weight, out.alpha, 1.0, 2.0, 0.5)
    torch.testing.assert_close(out.loss, expected)
    module(logits_u, logits_b, proj, y, update_balancer=False)
    assert len(module.balancer.state_dict()["acc_unbalanced"]) == 1


def test_lda_loss_window_none_is_the_default_window():
    module = L.LDALoss(COUNTS, window=None, batch_size=4)
    assert module.balancer.window == L.default_window(sum(COUNTS), 1.0, 4) == 19


# ---- priors, weights, schedules ------------------------------------------------------------------------------
def test_target_prior_specs(tmp_path):
    uniform = L.parse_target_prior("uniform", COUNTS)
    torch.testing.assert_close(uniform, torch.full((4,), 0.25, dtype=torch.float64))
    torch.testing.assert_close(L.parse_target_prior("source", COUNTS), L.prior_from_counts(COUNTS, torch.float64))
    path = tmp_path / "prior.json"
    path.write_text(json.dumps([1, 1, 2, 4]))
    expected = torch.tensor([1, 1, 2, 4], dtype=torch.float64) / 8
    torch.testing.assert_close(L.parse_target_prior(str(path), COUNTS), expected)
    torch.testing.assert_close(L.parse_target_prior("1, 1 2,4", COUNTS), expected)
    with pytest.raises(ValueError, match=r"prior.json: MY.KEY must be a list of 4 non-negative"):
        path.write_text("[1, 2]")
        L.parse_target_prior(str(path), COUNTS, key="MY.KEY")
    with pytest.raises(ValueError, match=r"MY.KEY = 'balanced' is neither 'uniform' nor 'source'"):
        L.parse_target_prior("balanced", COUNTS, key="MY.KEY")


def test_detection_and_classification_parse_priors_alike(tmp_path):
    from lt_detectron.classification.methods import parse_target_prior as classification_prior
    from lt_detectron.modeling.priors import load_foreground_prior

    for spec in ("uniform", "source", "4 3 2 1"):
        torch.testing.assert_close(
            classification_prior(spec, np.asarray(COUNTS)).double(), L.parse_target_prior(spec, COUNTS)
        )
        torch.testing.assert_close(load_foreground_prior(spec, COUNTS), L.parse_target_prior(spec, COUNTS))
    with pytest.raises(ConfigError, match="METHOD.TEST_TARGET_PRIOR"):
        classification_prior("balanced", np.asarray(COUNTS))


def test_effective_number_beta_is_the_class_weights_default():
    assert L.effective_number_beta(COUNTS) == (sum(COUNTS) - 1) / sum(COUNTS)
    torch.testing.assert_close(
        L.class_weights(COUNTS), L.class_weights(COUNTS, beta=L.effective_number_beta(COUNTS)), rtol=0, atol=0
    )


def test_deferred_reweighting_switch():
    drw = L.DeferredReweighting(COUNTS, start=3, beta=0.99)
    assert drw.enabled and drw.weights(2) is None
    torch.testing.assert_close(drw.weights(3), L.drw_weights(COUNTS, 3, 3, 0.99))
    assert drw.weights(10) is drw.weights(4)  # computed once
    off = L.DeferredReweighting(COUNTS, start=-1)
    assert not off.enabled and off.weights(10**6) is None
    module = L.build_loss("ldam", counts=COUNTS, drw_start=3)
    module.set_iteration(3)
    torch.testing.assert_close(module.weight, L.drw_weights(COUNTS, 3, 3))


def test_meta_stage_starts_at_the_first_lr_decay():
    assert stage_two_start(5, [10, 20]) == 5
    assert stage_two_start(-1, [10, 20]) == 10
    assert stage_two_start(-1, (20, 10)) == 10  # the first decay, whatever order the list has
    assert stage_two_start(-1, ()) == 0


def test_uniform_renorm_classifier_rounds_like_the_authors_layer():
    """Bitwise the same logits and gradients as `normalize(x) @ normalize(W, dim=0)` on the (in, out) weight."""
    torch.manual_seed(0)
    authors = torch.nn.Parameter(torch.empty(64, 10).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5))
    torch.manual_seed(0)
    ours = CosineLinear(64, 10, init="uniform_renorm")
    x = torch.randn(32, 64)
    expected = F.normalize(x, dim=1) @ F.normalize(authors, dim=0)
    got = ours(x)
    assert torch.equal(got, expected)
    (grad_authors,) = torch.autograd.grad((expected**2).sum(), authors)
    (grad_ours,) = torch.autograd.grad((got**2).sum(), ours.weight)
    assert torch.equal(grad_ours, grad_authors.t())


# ---- one source of defaults ----------------------------------------------------------------------------------
# Keys whose detection default deliberately differs from the paper record (each commented in lt_detectron/config.py).
DETECTION_DIFFERS = {
    "CB.BETA",
    "META.START_ITER",
    "META.INNER_LR",
    "META.DEV_PER_CLASS",
    "META.DEV_BATCH_SIZE",
    "META.MODE",
}


def _detection_cfg():
    from detectron2.config import get_cfg as d2_cfg

    from lt_detectron import add_lt_config

    return add_lt_config(d2_cfg()).MODEL.LT


def test_both_config_trees_take_defaults_from_the_records():
    from lt_detectron.classification.config import get_cfg
    from lt_detectron.meta import META_DEFAULTS

    det, cls = _detection_cfg(), get_cfg().METHOD
    records = {
        "CB": (L.CB_DEFAULTS, {"BETA": "beta"}),
        "FOCAL": (L.FOCAL_DEFAULTS, {"GAMMA": "gamma", "FORM": "form"}),
        "LDAM": (L.LDAM_DEFAULTS, {"MAX_MARGIN": "max_margin", "SCALE": "scale"}),
        "LADE": (L.LADE_DEFAULTS, {"ALPHA": "alpha", "LAMBDA": "lam", "IMPORTANCE": "importance"}),
        "META": (META_DEFAULTS, {"INNER_LR": "inner_lr", "EPS_LR": "eps_lr", "BETA": "beta", "MODE": "mode"}),
    }
    lda_keys = {k.upper(): k for k in ("gamma", "window", "lambda_u", "lambda_b", "lambda_d", "margin", "proj_head")}
    for group, (record, keys) in [*records.items(), ("LDA", (L.LDA_DEFAULTS, lda_keys))]:
        for key, field in keys.items():
            assert cls[group][key] == getattr(record, field), f"METHOD.{group}.{key}"
    for key, field in lda_keys.items():
        assert det.LDA[key] == getattr(L.LDA_LVIS_DEFAULTS, field), f"MODEL.LT.LDA.{key}"
    for group, (record, keys) in records.items():
        for key, field in keys.items():
            if f"{group}.{key}" not in DETECTION_DIFFERS:
                assert det[group][key] == getattr(record, field), f"MODEL.LT.{group}.{key}"
    assert det.LDAM.DRW_BETA == cls.DRW.BETA == L.LDAM_DEFAULTS.drw_beta
    assert det.META.START_ITER == 0 and cls.META.START_EPOCH == META_DEFAULTS.start == -1
    # The records are the library's own defaults too.
    assert L.RiskBalancer().gamma == L.LDA_DEFAULTS.gamma and L.build_loss("focal").gamma == L.FOCAL_DEFAULTS.gamma


def test_drw_keys_have_one_meaning_each():
    from lt_detectron.classification.methods import drw_start_epoch

    def cfg(*overrides):
        return load_config(None, ["SOLVER.EPOCHS", "40", *overrides])

    assert drw_start_epoch(cfg()) == -1  # off
    assert drw_start_epoch(cfg(), forced=True) == 32  # ldam_drw: 80% of the epochs
    assert drw_start_epoch(cfg("METHOD.DRW.ENABLED", "True")) == 32
    assert drw_start_epoch(cfg("METHOD.DRW.ENABLED", "True", "METHOD.DRW.START_EPOCH", "5")) == 5
    assert drw_start_epoch(cfg("METHOD.DRW.START_EPOCH", "5")) == -1  # a start alone does not switch DRW on


def test_override_syntax():
    """Detectron2's KEY VALUE pairs; a string value keeps its text (an `=` included)."""
    cfg = load_config(None, ["SOLVER.EPOCHS", "3", "METHOD.TEST_TARGET_PRIOR", "a=b.json", "TEST.PLOTS", "False"])
    assert cfg.SOLVER.EPOCHS == 3 and cfg.METHOD.TEST_TARGET_PRIOR == "a=b.json" and cfg.TEST.PLOTS is False
    with pytest.raises(ConfigError, match="'TEST.PLOTS' has no value"):
        load_config(None, ["SOLVER.EPOCHS", "3", "TEST.PLOTS"])
    with pytest.raises(ConfigError, match="unknown key 'METHOD.TEST_PRIOR'"):  # old names are gone, not translated
        load_config(None, ["METHOD.TEST_PRIOR", "source"])
