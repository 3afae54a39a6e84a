"""One fused cross-entropy of shifted logits, shared by LDAM and balanced softmax (Cao et al., NeurIPS
2019, arXiv:1906.07413; Ren et al., NeurIPS 2020, arXiv:2007.10740).

`shifted_cross_entropy` returns `CE(s * z_i + b - t_{y_i} onehot(y_i), y_i)`: LDAM is s = 30, b = 0,
t = s * Delta; balanced softmax is s = 1, b = log p_s, t = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils import torch_compat
from ._validation import reduce_loss

# float32 exp() of arguments below about -87 gives denormals (or 0), which CPUs compute on a slow path. A logit more
# than 70 below its row's maximum has softmax probability < e^-70 ~ 4e-31: raising it to that floor changes the
# log-sum-exp by less than C * 4e-31 (nothing in float32) and its own gradient by < 4e-31.
FLOAT32_FLOOR_BELOW_MAX = 70.0


def floor_far_below_row_max(shifted: torch.Tensor) -> None:
    """In place: entries further than 70 below their row max are raised to that floor. LDAM's s = 30 spreads N(0, 1)
    logits over ~200. The caller restores the target column (its log-probability is the loss and must stay exact)."""
    floor = shifted.amax(dim=1, keepdim=True).sub_(FLOAT32_FLOOR_BELOW_MAX)
    torch.maximum(shifted, floor, out=shifted)


def shifted_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    scale: float = 1.0,
    column_shift: torch.Tensor | None = None,
    target_shift: torch.Tensor | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    """`CE(scale * z_i + column_shift - target_shift_{y_i} onehot(y_i), y_i)` on validated inputs (both shifts
    per class, length C): per example ("none"), summed, or the batch mean (0 for an empty batch).

    Args:
        logits: (B, C) logits z.
        targets: (B,) int64 class indices in [0, C).
        scale: factor s of the logits.
        column_shift: optional length-C shift b added to every row (balanced softmax: log p_s); None = 0.
        target_shift: optional length-C shift t subtracted from the target logit only (LDAM: s * Delta); None = 0.
        reduction: "none", "sum" or "mean".

    Returns:
        The (B,) per-example losses for "none", else a scalar.
    """
    if targets.numel() == 0:
        return reduce_loss(logits.sum(dim=1), reduction)
    if torch_compat.functorch_transforms_active():
        # torch.func (the meta-weighting engine differentiates losses twice): plain autograd ops.
        shifted = logits * scale if scale != 1.0 else logits
        if column_shift is not None:
            shifted = shifted + column_shift
        if target_shift is not None:
            shifted = shifted.scatter_add(1, targets[:, None], -target_shift[targets][:, None])
        return F.cross_entropy(shifted, targets, reduction=reduction)
    return _ShiftedCrossEntropy.apply(logits, targets, float(scale), column_shift, target_shift, reduction)


class _ShiftedCrossEntropy(torch.autograd.Function):
    """The function above with a hand-written gradient: dL/dz_ic = s * g_i * (q_ic - [c = y_i]), with q the softmax
    of the shifted logits.

    Composed from autograd ops (shifted copy, log-softmax, NLL's zero-filled gradient, log-softmax backward, the
    scale's backward) it needs two more (B, C) buffers and passes than cross-entropy, which missed
    the 2x-of-cross-entropy budget (benchmarks/results/loss_throughput.md). Here the forward makes one (B, C)
    buffer and ends in cross-entropy's own NLL kernel, and the backward is cross-entropy's two kernels, with s on
    the incoming gradient. Each extra small op is a visible share of a small cross-entropy's time, so the target
    index is made once and the reduction happens inside. Not twice differentiable: under torch.func transforms
    `shifted_cross_entropy` uses the composed form.
    """

    @staticmethod
    def forward(ctx, logits, targets, scale, column_shift, target_shift, reduction):
        shifted = logits * scale if column_shift is None else torch.add(column_shift, logits, alpha=scale)
        # In place where the kernel is known to finish reading a row before writing it (contiguous CPU rows).
        in_place = shifted.device.type == "cpu" and shifted.is_contiguous()
        # Only a scale (LDAM's s = 30) spreads logits beyond the floor as a rule; at scale 1 they are as wide as
        # cross-entropy sees them. Flooring unconditionally (two passes) is chosen over checking the spread first (one
        # pass, plus two when needed); the comparison is in benchmarks/results/loss_throughput.md.
        floor = in_place and scale > 1.0 and shifted.dtype == torch.float32
        target_index = targets[:, None]
        if target_shift is not None or floor:
            # The target column is written back after the floor: exact, and shifted by t_i where LDAM asks for it.
            target_values = shifted.gather(1, target_index)
            if target_shift is not None:
                target_values.sub_(target_shift[target_index])
            if floor:
                floor_far_below_row_max(shifted)
            shifted.scatter_(1, target_index, target_values)
        log_q = torch.log_softmax(shifted, dim=1, out=shifted if in_place else None)
        loss, total_weight = torch_compat.nll_loss_forward(log_q, targets, reduction)
        ctx.save_for_backward(log_q, targets, total_weight)
        ctx.scale, ctx.reduction = scale, reduction
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        log_q, targets, total_weight = ctx.saved_tensors
        # Cross-entropy's own backward kernels: NLL's gradient -s g_i onehot(y_i) (with 1/B for "mean"), then
        # log_softmax_backward(G, log q) = G - q sum(G), which gives s g_i (q_i - onehot(y_i)).
        grad = grad_loss * ctx.scale if ctx.scale != 1.0 else grad_loss
        grad_log_q = torch_compat.nll_loss_backward(grad, log_q, targets, ctx.reduction, total_weight)
        grad_logits = torch_compat.log_softmax_backward(grad_log_q, log_q, 1)
        # Shifts that require grad (a learned prior or margins): dL/db_c = sum_i dL/dshifted_ic and
        # dL/dt_c = -sum_{i: y_i = c} dL/dshifted_ic.
        grad_column = grad_target = None
        if ctx.needs_input_grad[3]:
            grad_column = grad_logits.sum(dim=0) / ctx.scale
        if ctx.needs_input_grad[4]:
            target_grad = grad_logits.gather(1, targets[:, None]).squeeze(1)
            grad_target = torch.zeros_like(grad_column if grad_column is not None else log_q[0])
            grad_target.index_add_(0, targets, target_grad, alpha=-1.0 / ctx.scale)
        return grad_logits, None, None, grad_column, grad_target, None
