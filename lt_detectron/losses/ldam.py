"""LDAM margin loss and its deferred re-weighting (DRW) schedule (METHODS §2; Cao et al. 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._validation import (
    ArrayLike,
    check_class_weight,
    check_counts,
    check_logits_targets,
    check_reduction,
    format_indices,
    reduce_loss,
)
from .class_weights import class_weights


def ldam_margins(counts: ArrayLike, max_margin: float = 0.5) -> torch.Tensor:
    """Margins `Delta_c = K / n_c^{1/4}`, K such that `max_c Delta_c = max_margin` (METHODS §2; Cao et al. 2019 §3.2).

    Returned in float64 on the device of `counts`; classes with n_c = 0 have no finite margin and raise.
    """
    return _margins(check_counts(counts, "ldam_margins"), max_margin)


def _margins(n: torch.Tensor, max_margin: float) -> torch.Tensor:
    """Margins from counts already checked by `check_counts` (finite, >= 0): a zero count is the only way to an
    infinite n^(-1/4), so one synchronising read of the largest value checks them all."""
    fn = "ldam_margins"
    inv_fourth_root = n.pow(-0.25)
    largest = inv_fourth_root.max().item()
    if math.isinf(largest):
        raise ValueError(
            f"{fn}: LDAM's margin K / n_c^(1/4) is infinite for classes {format_indices(n <= 0)} with zero count. "
            "Fix: drop these classes from the label space, or give them a count of at least 1."
        )
    if max_margin < 0:
        raise ValueError(f"{fn}: max_margin must be >= 0; got {max_margin}.")
    return inv_fourth_root * (max_margin / largest)


def ldam_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    counts: ArrayLike | None,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    *,
    margins: ArrayLike | None = None,
) -> torch.Tensor:
    """`w_{y_i} * CE(s * (z_i - Delta_{y_i} onehot(y_i)), y_i)`, batch mean (METHODS §2; Cao et al. 2019 §3.2).

    `weight` (e.g. from `drw_weights`) re-weights per class; None = unweighted. Margins come from `counts` via
    `ldam_margins`, or are given directly as `margins` (counts=None), e.g. foreground margins plus a background
    column with margin 0 in detection.
    """
    fn = "ldam_loss"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    if (counts is None) == (margins is None):
        raise ValueError(f"{fn}: pass exactly one of `counts` (margins K / n_c^(1/4)) and `margins`.")
    if margins is None:
        counts = check_counts(counts, fn, num_classes=logits.shape[1])
        margins = _margins(counts, max_margin).to(device=logits.device, dtype=logits.dtype)
    else:
        # Same contract as a class weight: length C, finite, >= 0.
        margins = check_class_weight(margins, logits.shape[1], fn, logits)

    target_shift = scale * margins[targets]  # s * Delta_{y_i}, subtracted from the target logit only
    if torch._C._are_functorch_transforms_active():
        # torch.func (the meta-weighting engine differentiates this loss twice): plain autograd ops.
        scaled = (logits * scale).scatter_add(1, targets[:, None], -target_shift[:, None])
        per_example = F.cross_entropy(scaled, targets, reduction="none")
    else:
        per_example = _LdamFunction.apply(logits, targets, target_shift, scale)
    if weight is not None:
        per_example = per_example * weight[targets]
    return reduce_loss(per_example, reduction)


class _LdamFunction(torch.autograd.Function):
    """Per-example `CE(s * z_i - s * Delta_{y_i} onehot(y_i), y_i)` with a hand-written gradient.

    With log q_i = log_softmax(s * z_i - s * Delta_{y_i} onehot(y_i)): loss_i = -log q_{i y_i} and
    dL/dz_ic = s * g_i * (q_ic - [c = y_i]). Composed from autograd ops (scaled copy, log-softmax, NLL's zero-filled
    gradient, log-softmax backward, multiplication by s) it needs about two more (B, C) buffers and passes than
    cross-entropy, which broke the 2x-of-cross-entropy budget at 256 x 1000 (benchmarks/loss_throughput.py). Here s
    goes onto the (B,) incoming gradient and the forward reuses one (B, C) buffer. Not twice differentiable: under
    torch.func transforms `ldam_loss` uses the composed form instead.
    """

    @staticmethod
    def forward(ctx, logits, targets, target_shift, scale):
        scaled = (logits * scale).scatter_add_(1, targets[:, None], -target_shift[:, None])
        # In place where the kernel is known to finish reading a row before writing it (contiguous CPU rows).
        in_place = scaled.device.type == "cpu" and scaled.is_contiguous()
        log_q = torch.log_softmax(scaled, dim=1, out=scaled if in_place else None)
        ctx.save_for_backward(log_q, targets)
        ctx.scale = scale
        return -log_q.gather(1, targets[:, None]).squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_example):
        log_q, targets = ctx.saved_tensors
        row_scale = (ctx.scale * grad_per_example)[:, None]
        # softmax(log q) = q; unlike exp(log q) it runs the vectorised softmax kernel, fast on denormal outputs.
        grad_logits = torch.softmax(log_q, dim=1).mul_(row_scale)
        # Target column q_y - 1 = expm1(log q_y): exact where q_y ~ 1, unlike the difference of the rounded q_y and 1.
        target_grad = row_scale * torch.expm1(log_q.gather(1, targets[:, None]))
        return grad_logits.scatter_(1, targets[:, None], target_grad), None, None, None


def drw_weights(counts: ArrayLike, step: int, start: int, beta: float = 0.9999) -> torch.Tensor | None:
    """Deferred re-weighting: None before `start` (or when start < 0), effective-number weights after (METHODS §2).

    Cao et al. switch at epoch 160 of 200 on CIFAR; `step` and `start` are in whatever unit the caller counts.
    """
    if start < 0 or step < start:
        return None
    return class_weights(counts, kind="effective_number", beta=beta)
