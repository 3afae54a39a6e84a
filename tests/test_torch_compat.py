"""The compatibility module for private torch entry points: private path and plain-autograd fallback agree."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lt_detectron import losses
from lt_detectron.utils import torch_compat


def _inputs(batch: int = 12, classes: int = 7, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, classes, (batch,), generator=generator)
    counts = torch.randint(1, 50, (classes,), generator=generator).double()
    return logits, targets, counts


def test_this_torch_has_every_private_entry_point():
    """The fallbacks exist for a future torch; on the tested stacks the fast path must be the one that runs."""
    assert torch_compat.missing_entry_points() == []


def test_fallback_is_forced_and_restored():
    assert not torch_compat.functorch_transforms_active()
    with torch_compat.use_fallback():
        assert torch_compat.functorch_transforms_active()  # the safe answer: composed autograd path
        with torch_compat.use_fallback(enabled=False):
            assert not torch_compat.functorch_transforms_active()
        assert torch_compat.functorch_transforms_active()
    assert not torch_compat.functorch_transforms_active()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_and_log_softmax_backward_match_autograd(reduction):
    logits, targets, _ = _inputs()
    log_q = torch.log_softmax(logits, dim=1)
    grad = torch.rand(len(targets) if reduction == "none" else (), dtype=torch.float64) + 0.5
    expected_logits = logits.clone().requires_grad_(True)
    expected_loss = F.cross_entropy(expected_logits, targets, reduction=reduction)
    (expected_grad,) = torch.autograd.grad(expected_loss, expected_logits, grad)
    for forced in (False, True):
        with torch_compat.use_fallback(enabled=forced):
            loss, total_weight = torch_compat.nll_loss_forward(log_q, targets, reduction)
            grad_log_q = torch_compat.nll_loss_backward(grad, log_q, targets, reduction, total_weight)
            grad_logits = torch_compat.log_softmax_backward(grad_log_q, log_q, 1)
        if reduction != "none":  # ATen leaves it 0 for "none", where nothing divides by it
            assert float(total_weight) == len(targets)
        torch.testing.assert_close(loss, expected_loss, msg=f"forced fallback={forced}")
        torch.testing.assert_close(grad_logits, expected_grad, msg=f"forced fallback={forced}")


LOSSES = {
    "ldam": lambda z, y, n: losses.ldam_loss(z, y, n),
    "balanced_softmax": lambda z, y, n: losses.balanced_softmax_loss(z, y, losses.prior_from_counts(n)),
    "focal": lambda z, y, n: losses.focal_loss(z, y, gamma=2.0),
    "ldam_weighted_sum": lambda z, y, n: losses.ldam_loss(z, y, n, weight=losses.class_weights(n), reduction="sum"),
    "lade": lambda z, y, n: losses.lade_loss(z, y, losses.prior_from_counts(n)),
}


KERNELS = ("torch._log_softmax_backward_data", "torch.ops.aten.nll_loss_forward", "torch.ops.aten.nll_loss_backward")


def test_use_fallback_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown entry points"):
        with torch_compat.use_fallback("torch.nope"):
            pass


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_agree_on_private_path_and_fallback(name, device):
    """Each loss with a hand-written backward gives the same value and gradient (a) on the private kernels,
    (b) with the kernels' fallbacks inside the same hand-written backward, (c) on the composed autograd path that a
    torch without the transforms check takes."""
    logits, targets, counts = (t.to(device) for t in _inputs(seed=3))
    results = []
    for forced in ((), KERNELS, tuple(torch_compat._ENTRY_POINTS)):
        z = logits.clone().requires_grad_(True)
        with torch_compat.use_fallback(*forced, enabled=bool(forced)):
            loss = LOSSES[name](z, targets, counts)
            (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        results.append((loss.detach(), grad))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(grad, results[0][1])
