"""Properties that pin the semantics of lt_detectron.losses (docs/methods.md), the risk balancer and the registry."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from lt_detectron import losses as L

COUNTS = torch.tensor([500.0, 120.0, 40.0, 9.0, 2.0])
PRIOR = COUNTS / COUNTS.sum()


def batch(num: int = 12, num_classes: int = 5, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, num_classes, generator=generator, dtype=dtype)
    targets = torch.randint(0, num_classes, (num,), generator=generator)
    return logits.requires_grad_(), targets


def test_lade_with_alpha_zero_is_balanced_softmax():
    logits, targets = batch()
    assert torch.allclose(
        L.lade_loss(logits, targets, PRIOR, alpha=0.0), L.balanced_softmax_loss(logits, targets, PRIOR)
    )


def test_balanced_softmax_with_uniform_prior_is_cross_entropy():
    logits, targets = batch()
    uniform = torch.full((5,), 0.2)
    assert torch.allclose(L.balanced_softmax_loss(logits, targets, uniform), F.cross_entropy(logits, targets))


def test_adjust_logits_identity_and_uniform_target():
    logits, _ = batch(dtype=torch.float64)
    prior64 = PRIOR.double()
    assert torch.allclose(L.adjust_logits(logits, prior64, prior64), logits, atol=1e-12)
    difference = L.adjust_logits(logits, prior64) - (logits - prior64.log())
    assert torch.allclose(difference, difference[0, 0].expand_as(difference), atol=1e-12)  # one constant
    # Uniform target: PC Softmax undoes the prior that balanced softmax trains in.
    assert torch.allclose(L.pc_softmax(logits + prior64.log(), prior64), logits.softmax(dim=1), atol=1e-12)


def test_adjust_logits_any_shape_and_zero_target_class():
    logits = torch.randn(2, 3, 5)
    target = torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25])
    probabilities = L.pc_softmax(logits, PRIOR, target)
    assert probabilities.shape == (2, 3, 5)
    assert torch.all(probabilities[..., 0] == 0) and torch.allclose(probabilities.sum(-1), torch.ones(2, 3))


def test_effective_number_limits():
    inverse = L.class_weights(COUNTS, kind="inverse", dtype=torch.float64)
    near_one = L.class_weights(COUNTS, beta=1 - 1e-9, dtype=torch.float64)
    near_zero = L.class_weights(COUNTS, beta=1e-6, dtype=torch.float64)
    assert torch.allclose(near_one, inverse, rtol=1e-5)
    assert torch.allclose(near_zero, torch.ones(5, dtype=torch.float64), rtol=1e-5)
    default = L.class_weights(COUNTS)
    assert default.sum().item() == pytest.approx(5.0) and torch.all(default[1:] > default[:-1])


def test_zero_counts_error_or_excluded_with_warning():
    counts = [10.0, 0.0, 5.0, 0.0]
    with pytest.raises(ValueError, match=r"zero for classes \[1, 3\].*zero_policy='exclude'"):
        L.class_weights(counts)
    with pytest.warns(UserWarning, match=r"\[1, 3\]"):
        weights = L.class_weights(counts, kind="inverse", zero_policy="exclude")
    assert weights[1] == 0 and weights[3] == 0 and torch.isfinite(weights).all()
    assert weights.sum().item() == pytest.approx(2.0)  # normalised over the two weighted classes


def test_cb_mean_is_batch_mean_not_weight_normalised():
    logits, targets = batch()
    weight = L.class_weights(COUNTS)
    per_example = L.cb_cross_entropy(logits, targets, weight, reduction="none")
    assert per_example.shape == (12,)
    assert torch.allclose(L.cb_cross_entropy(logits, targets, weight), per_example.sum() / 12)
    assert not torch.allclose(L.cb_cross_entropy(logits, targets, weight), F.cross_entropy(logits, targets, weight))


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, targets = batch()
    assert torch.allclose(L.focal_loss(logits, targets, gamma=0.0), F.cross_entropy(logits, targets))


def test_ldam_margins_and_drw_schedule():
    margins = L.ldam_margins(COUNTS)
    assert margins.max().item() == pytest.approx(0.5)
    assert torch.allclose(margins * COUNTS.double() ** 0.25, margins[0] * COUNTS[0].double() ** 0.25)
    assert L.drw_weights(COUNTS, step=159, start=160) is None
    assert L.drw_weights(COUNTS, step=10_000, start=-1) is None
    assert torch.allclose(L.drw_weights(COUNTS, step=160, start=160), L.class_weights(COUNTS, beta=0.9999))


def test_empty_batch_gives_zero():
    logits, targets = torch.zeros(0, 5, requires_grad=True), torch.zeros(0, dtype=torch.long)
    for value in (
        L.cb_cross_entropy(logits, targets, L.class_weights(COUNTS)),
        L.lade_loss(logits, targets, PRIOR),
        *L.lda_divergence(torch.zeros(0, 3), targets),
    ):
        assert value.item() == 0.0


def test_lda_divergence_semantics():
    # Two tight, orthogonal clusters: no intra spread and centres at distance 1 = margin, so both terms vanish.
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    targets = torch.tensor([4, 4, 7, 7])
    intra, inter = L.lda_divergence(features, targets)
    assert intra.item() == pytest.approx(0.0, abs=1e-7) and inter.item() == pytest.approx(0.0, abs=1e-7)
    # Identical centres violate the margin fully; singletons have no spread to measure.
    intra, inter = L.lda_divergence(torch.tensor([[1.0, 1.0], [2.0, 2.0]]), torch.tensor([0, 1]))
    assert intra.item() == 0.0 and inter.item() == pytest.approx(1.0)
    # Equal pair weights reproduce the unweighted mean.
    features, targets = torch.randn(10, 4), torch.randint(0, 5, (10,))
    unweighted = L.lda_divergence(features, targets)[1]
    weighted = L.lda_divergence(features, targets, class_weights=torch.full((5,), 0.3))[1]
    assert torch.allclose(unweighted, weighted)


# ---- risk balancer ------------------------------------------------------------------------------------------


def test_risk_balancer_alpha():
    balancer = L.RiskBalancer(gamma=2.0, window=3)
    assert balancer.alpha == 0.0
    assert balancer.update(60.0, 70.0) == 0.0  # balanced classifier at least as accurate: no boost
    balancer.update(80.0, 80.0)
    assert balancer.alpha == 0.0
    balancer.update(100.0, 60.0)  # means 80 vs 70
    assert balancer.alpha == pytest.approx(100.0)
    balancer.update(90.0, 30.0)  # window drops the first batch: means 90 vs 56.67
    assert balancer.alpha == pytest.approx((90.0 - 170.0 / 3) ** 2)


def test_risk_balancer_state_restores_next_alpha_exactly():
    generator = torch.Generator().manual_seed(0)
    accuracies = (100 * torch.rand(40, 2, generator=generator, dtype=torch.float64)).tolist()
    original = L.RiskBalancer(gamma=1.5, window=7)
    for acc_u, acc_b in accuracies[:25]:
        original.update(acc_u, acc_b)
    buffer = io.BytesIO()
    torch.save({"balancer": original.state_dict()}, buffer)
    buffer.seek(0)
    resumed = L.RiskBalancer(gamma=2.0, window=100)
    resumed.load_state_dict(torch.load(buffer, weights_only=True)["balancer"])  # plain data: the safe loader
    for acc_u, acc_b in accuracies[25:]:
        assert resumed.update(acc_u, acc_b) == original.update(acc_u, acc_b)


def test_risk_balancer_default_window_and_accuracy():
    assert L.default_window(num_samples=10_000, min_count=5, batch_size=128) == math.ceil(10_000 / 640)
    assert L.default_window(num_samples=100, min_count=50, batch_size=64) == 1
    assert L.RiskBalancer(window=None, counts=COUNTS, batch_size=8).window == math.ceil(671 / 16)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    assert L.accuracy_percent(logits, torch.tensor([0, 1, 1, 0])) == 50.0


# ---- registry -----------------------------------------------------------------------------------------------

FUNCTIONAL = {
    "ce": lambda z, y: F.cross_entropy(z, y),
    "cb": lambda z, y: L.cb_cross_entropy(z, y, L.class_weights(COUNTS)),
    "focal": lambda z, y: L.focal_loss(z, y),
    "cb_focal": lambda z, y: L.focal_loss(z, y, weight=L.class_weights(COUNTS)),
    "ldam": lambda z, y: L.ldam_loss(z, y, COUNTS),
    "balanced_softmax": lambda z, y: L.balanced_softmax_loss(z, y, PRIOR),
    "lade": lambda z, y: L.lade_loss(z, y, PRIOR),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_build_loss_matches_functional_and_moves_dtype(name):
    assert set(L.LOSS_REGISTRY.names()) == set(FUNCTIONAL)
    module = L.build_loss(name, counts=COUNTS)
    logits, targets = batch()
    assert torch.allclose(module(logits, targets), FUNCTIONAL[name](logits, targets), atol=1e-6)
    assert module.per_example == (name != "lade")
    if module.per_example:
        assert module(logits, targets, reduction="none").shape == (12,)
    else:
        with pytest.raises(ValueError, match="batch-level"):
            module(logits, targets, reduction="none")
    assert module.state_dict() == {}  # class statistics are rebuilt from data, never loaded from checkpoints
    module64 = module.to(torch.float64)
    value = module64(logits.detach().double().requires_grad_(), targets)
    assert value.dtype == torch.float64


def test_ldam_module_deferred_reweighting():
    module = L.build_loss("ldam", counts=COUNTS, drw_start=100)
    logits, targets = batch()
    module.set_iteration(99)
    assert torch.allclose(module(logits, targets), L.ldam_loss(logits, targets, COUNTS))
    module.set_iteration(100)
    weighted = L.ldam_loss(logits, targets, COUNTS, weight=L.class_weights(COUNTS, beta=0.9999))
    assert torch.allclose(module(logits, targets), weighted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_build_loss_on_cuda(name):
    module = L.build_loss(name, counts=COUNTS).cuda()
    logits, targets = batch()
    value = module(logits.detach().cuda(), targets.cuda())
    assert value.device.type == "cuda"
    assert torch.allclose(value.cpu(), module.cpu()(logits, targets), atol=1e-5)
    intra, inter = L.lda_divergence(logits.detach().cuda(), targets.cuda())
    assert torch.allclose(torch.stack([intra, inter]).cpu(), torch.stack(L.lda_divergence(logits.detach(), targets)))


def test_half_precision_logits_keep_float32_class_statistics():
    counts = torch.tensor([1e9, 1.0, 1.0])  # a prior of 1e-9 is 0 in float16: it must stay float32
    prior = counts / counts.sum()
    logits = torch.randn(4, 3).to(torch.bfloat16).requires_grad_()
    targets = torch.tensor([0, 1, 2, 0])
    value = L.lade_loss(logits, targets, prior)
    reference = L.lade_loss(logits.detach().float(), targets, prior)
    assert value.dtype == torch.float32 and torch.allclose(value, reference)
    (grad,) = torch.autograd.grad(value, logits)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()
    assert torch.isfinite(L.balanced_softmax_loss(logits.detach().half(), targets, prior))


def _ldam_composite(logits, targets, counts, scale=30.0, weight=None):
    """LDAM from autograd ops (Cao et al., NeurIPS 2019, arXiv:1906.07413), the
    reference for the hand-written gradient of ldam_loss."""
    margins = L.ldam_margins(counts).to(logits.dtype)
    shifted = (logits * scale).scatter_add(1, targets[:, None], -(scale * margins[targets])[:, None])
    return F.cross_entropy(shifted, targets, weight=weight, reduction="none")


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_ldam_hand_written_gradient_matches_autograd(layout):
    logits, targets = batch(num=16, seed=3)
    logits = logits.detach() * 3.0  # s = 30: many softmax entries underflow to denormals or 0
    if layout == "transposed":  # non-contiguous rows take the out-of-place path
        logits = logits.T.contiguous().T
    logits.requires_grad_()
    weight = L.class_weights(COUNTS)
    for w in (None, weight):
        got = L.ldam_loss(logits, targets, COUNTS, weight=w, reduction="none")
        # Reference in float64 on the same float32 inputs: the float32 autograd composite itself is off by ~1% on
        # target entries with q_y ~ 1 (1 - q_y lost to rounding), which the hand-written gradient avoids.
        logits64 = logits.detach().double().requires_grad_()
        want = _ldam_composite(logits64, targets, COUNTS, weight=None if w is None else w.double())
        assert torch.allclose(got.double(), want, rtol=1e-6, atol=1e-6)
        upstream = torch.rand(len(targets), generator=torch.Generator().manual_seed(1)) - 0.3  # mixed signs
        (g_got,) = torch.autograd.grad(got, logits, upstream)
        (g_want,) = torch.autograd.grad(want, logits64, upstream.double())
        assert torch.allclose(g_got.double(), g_want, rtol=1e-5, atol=1e-7)


def test_ldam_and_lade_leave_non_contiguous_logits_unchanged():
    logits, targets = batch(num=8, seed=4)
    view = logits.detach().T.contiguous().T.requires_grad_()
    before = view.detach().clone()
    L.ldam_loss(view, targets, COUNTS).backward()
    L.lade_loss(view, targets, PRIOR).backward()
    assert torch.equal(view.detach(), before) and torch.isfinite(view.grad).all()


def test_ldam_and_focal_differentiate_twice_under_torch_func():
    """The meta-weighting engine takes torch.func gradients of gradients of these per-example losses."""
    from torch.func import grad

    logits, targets = batch(num=6, seed=5, dtype=torch.float64)
    logits = logits.detach()

    def grad_norm(loss_fn):
        return grad(lambda z: grad(lambda w: loss_fn(w).sum())(z).square().sum())(logits)

    got = grad_norm(lambda z: L.ldam_loss(z, targets, COUNTS, scale=3.0, reduction="none"))
    want = grad_norm(lambda z: _ldam_composite(z, targets, COUNTS, scale=3.0))
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert torch.isfinite(grad_norm(lambda z: L.focal_loss(z, targets, reduction="none"))).all()


def test_ldam_explicit_margins_equal_count_margins_and_exactly_one_source_is_required():
    torch.manual_seed(0)
    counts = torch.tensor([500.0, 60.0, 8.0, 1.0])
    logits = torch.randn(16, 4, dtype=torch.float64)
    targets = torch.randint(0, 4, (16,))
    from_counts = L.ldam_loss(logits, targets, counts, max_margin=0.5)
    from_margins = L.ldam_loss(logits, targets, None, margins=L.ldam_margins(counts, 0.5))
    assert torch.allclose(from_counts, from_margins, rtol=1e-12)
    # A zero margin (detection's background column) leaves that class's logit unshifted.
    zero_last = torch.cat([L.ldam_margins(counts[:3], 0.5), torch.zeros(1, dtype=torch.float64)])
    only_last = torch.full((16,), 3)
    assert torch.allclose(
        L.ldam_loss(logits, only_last, None, margins=zero_last),
        torch.nn.functional.cross_entropy(30.0 * logits, only_last),
    )
    with pytest.raises(ValueError, match="exactly one of"):
        L.ldam_loss(logits, targets, counts, margins=L.ldam_margins(counts))
    with pytest.raises(ValueError, match="exactly one of"):
        L.ldam_loss(logits, targets, None)
    with pytest.raises(ValueError, match="finite and >= 0"):
        L.ldam_loss(logits, targets, None, margins=torch.tensor([0.1, -0.2, 0.3, 0.4]))
