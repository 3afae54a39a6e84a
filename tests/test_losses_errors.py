"""Bad input to lt_detectron.losses gives a clear error naming the function, the argument and the fix."""

from __future__ import annotations

import pytest
import torch

from lt_detectron import losses as L

COUNTS = [50.0, 20.0, 5.0, 1.0]
PRIOR = [n / sum(COUNTS) for n in COUNTS]
LOGITS = torch.randn(3, 4)
TARGETS = torch.tensor([0, 2, 3])


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: L.balanced_softmax_loss(torch.randn(4), TARGETS, PRIOR), r"`logits` must be .* \(B, C\)"),
        (lambda: L.lade_loss(LOGITS, torch.tensor([0, 1]), PRIOR), r"`targets` must have shape \(B,\) = \(3,\)"),
        (lambda: L.cb_cross_entropy(LOGITS, TARGETS.float(), [1.0] * 4), r"`targets` must be an integer tensor"),
        (lambda: L.focal_loss(LOGITS, torch.tensor([0, 4, 1])), r"`targets` must lie in \[0, 3\]"),
        (lambda: L.lader(LOGITS, TARGETS, PRIOR[:3]), r"`prior` must have shape \(C,\) = \(4,\)"),
        (lambda: L.lader(LOGITS, TARGETS, [0.5, 0.2, 0.2, 0.2]), r"must sum to 1; it sums to 1\.1.*prior_from_counts"),
        (lambda: L.balanced_softmax_loss(LOGITS, TARGETS, [0.5, 0.5, 0.0, 0.0]), r"zero for classes \[2, 3\]"),
        (lambda: L.adjust_logits(LOGITS, [0.5, 0.5, 0.0, 0.0]), r"`source_prior` is zero for classes \[2, 3\]"),
        (lambda: L.cb_cross_entropy(LOGITS, TARGETS, [1.0, 1.0]), r"`weight` must have shape \(C,\) = \(4,\)"),
        (lambda: L.class_weights([5.0, -1.0, 2.0]), r"`counts` must be >= 0; classes \[1\]"),
        (lambda: L.class_weights([[1.0, 2.0]]), r"1-D sequence of per-class training counts"),
        (lambda: L.class_weights(COUNTS, kind="sqrt"), r"unknown kind 'sqrt'; known kinds: inverse, effective_number"),
        (lambda: L.class_weights(COUNTS, beta=1.0), r"beta must be in \[0, 1\)"),
        (lambda: L.ldam_loss(LOGITS, TARGETS, [5.0, 0.0, 1.0, 1.0]), r"infinite for classes \[1\]"),
        (lambda: L.ldam_loss(LOGITS, TARGETS, COUNTS[:3]), r"`counts` has 3 entries but the logits have 4 columns"),
        (lambda: L.focal_loss(LOGITS, TARGETS, form="tanh"), r"form must be one of"),
        (lambda: L.lader(LOGITS, TARGETS, PRIOR, importance="row"), r"importance must be one of"),
        (lambda: L.cb_cross_entropy(LOGITS, TARGETS, [1.0] * 4, reduction="avg"), r"`reduction` must be one of"),
        (lambda: L.lda_divergence(torch.randn(3, 2), TARGETS, class_weights=[1.0, 1.0]), r"one weight per class id"),
        (lambda: L.lda_divergence(torch.randn(3, 2), TARGETS[:2]), r"`targets` must be an integer tensor of shape"),
    ],
)
def test_invalid_input_raises_clear_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_unknown_loss_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown loss 'lda_loss'; known losses: balanced_softmax, cb, cb_focal, ce"):
        L.build_loss("lda_loss", counts=COUNTS)


def test_build_loss_option_and_count_errors():
    with pytest.raises(TypeError, match=r"unknown options \['bta'\]; it accepts \['beta', 'zero_policy'\]"):
        L.build_loss("cb", counts=COUNTS, bta=0.9)
    with pytest.raises(ValueError, match=r"needs per-class training counts"):
        L.build_loss("lade")
    with pytest.raises(ValueError, match=r"negative"):
        L.build_loss("balanced_softmax", counts=[3.0, -2.0, 1.0])


def test_risk_balancer_errors():
    with pytest.raises(ValueError, match=r"acc_balanced must be a percentage in \[0, 100\]; got 150.0"):
        L.RiskBalancer().update(90.0, 150.0)
    with pytest.raises(ValueError, match=r"needs counts= and batch_size="):
        L.RiskBalancer(window=None)
    with pytest.raises(ValueError, match=r"skip the RiskBalancer update"):
        L.accuracy_percent(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"missing \['acc_balanced'"):
        L.RiskBalancer().load_state_dict({"gamma": 2.0, "window": 3, "acc_unbalanced": []})


def test_constant_tensors_are_checked_once_per_version():
    """Priors, margins and weights are validated once per tensor version (a hot-path saving), never trusted stale."""
    from lt_detectron.losses import _validation

    prior = torch.tensor(PRIOR)
    counts = torch.tensor(COUNTS)
    calls = []
    real_check = _validation._check_prior
    try:
        _validation._check_prior = lambda *args: calls.append(1) or real_check(*args)
        first = L.balanced_softmax_loss(LOGITS, TARGETS, prior)
        assert L.balanced_softmax_loss(LOGITS, TARGETS, prior) == first and len(calls) == 1
    finally:
        _validation._check_prior = real_check
    # An in-place change invalidates what was remembered: the bad prior and the zero count are caught.
    prior[0] += 1.0
    with pytest.raises(ValueError, match=r"must sum to 1"):
        L.balanced_softmax_loss(LOGITS, TARGETS, prior)
    L.ldam_loss(LOGITS, TARGETS, counts)
    counts[3] = 0.0
    with pytest.raises(ValueError, match=r"infinite for classes \[3\]"):
        L.ldam_loss(LOGITS, TARGETS, counts)
    # A prior that requires grad is never memoized (its log must stay in the graph).
    learnable = torch.tensor(PRIOR, requires_grad=True)
    L.balanced_softmax_loss(LOGITS, TARGETS, learnable).backward()
    assert learnable.grad is not None and learnable.grad.abs().sum() > 0
