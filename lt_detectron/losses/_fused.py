"""One fused cross-entropy of shifted logits, shared by LDAM and balanced softmax (METHODS §2, §4).

`shifted_cross_entropy` returns per-example `CE(s * z_i + b - t_i onehot(y_i), y_i)`: LDAM is s = 30, b = 0,
t_i = s * Delta_{y_i}; balanced softmax is s = 1, b = log p_s, t = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# float32 exp() of arguments below about -87 gives denormals (or 0), which CPUs compute on a slow path. A logit more
# than 70 below its row's maximum has softmax probability < e^-70 ~ 4e-31: raising it to that floor changes the
# log-sum-exp by less than C * 4e-31 (nothing in float32) and its own gradient by < 4e-31.
FLOAT32_FLOOR_BELOW_MAX = 70.0


def spread_beyond_floor(shifted: torch.Tensor) -> bool:
    """Whether some entry lies more than 70 below the largest: one read pass (a global aminmax, not a per-row one:
    torch.aminmax(dim=1) is ~25x slower than amax(dim=1) on CPU, torch 2.3)."""
    low, high = torch.aminmax(shifted)
    return float(high - low) > FLOAT32_FLOOR_BELOW_MAX


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
) -> torch.Tensor:
    """Per-example `CE(scale * z_i + column_shift - target_shift_i onehot(y_i), y_i)` on validated inputs."""
    if torch._C._are_functorch_transforms_active():
        # torch.func (the meta-weighting engine differentiates losses twice): plain autograd ops.
        shifted = logits * scale if scale != 1.0 else logits
        if column_shift is not None:
            shifted = shifted + column_shift
        if target_shift is not None:
            shifted = shifted.scatter_add(1, targets[:, None], -target_shift[:, None])
        return F.cross_entropy(shifted, targets, reduction="none")
    return _ShiftedCrossEntropy.apply(logits, targets, float(scale), column_shift, target_shift)


class _ShiftedCrossEntropy(torch.autograd.Function):
    """The function above with a hand-written gradient: dL/dz_ic = s * g_i * (q_ic - [c = y_i]), with q the softmax
    of the shifted logits.

    Composed from autograd ops (shifted copy, log-softmax, NLL's zero-filled gradient, log-softmax backward, the
    scale's backward) it needs two more (B, C) buffers and passes than cross-entropy, which broke the
    2x-of-cross-entropy budget at 256 x 1000 (benchmarks/loss_throughput.py). Here the forward makes one (B, C)
    buffer, the backward is cross-entropy's own kernel, and s goes onto the (B,) incoming gradient. Not twice
    differentiable: under torch.func transforms `shifted_cross_entropy` uses the composed form.
    """

    @staticmethod
    def forward(ctx, logits, targets, scale, column_shift, target_shift):
        shifted = logits * scale if column_shift is None else torch.add(column_shift, logits, alpha=scale)
        # In place where the kernel is known to finish reading a row before writing it (contiguous CPU rows).
        in_place = shifted.device.type == "cpu" and shifted.is_contiguous()
        # Only a scale (LDAM's s = 30) makes logits spread beyond the floor as a rule; at scale 1 the check would cost
        # a pass over (B, C) to guard against what cross-entropy itself meets on such logits.
        floor = in_place and scale > 1.0 and shifted.dtype == torch.float32 and spread_beyond_floor(shifted)
        if target_shift is not None or floor:
            # The target column is written back after the floor: exact, and shifted by t_i where LDAM asks for it.
            target_values = shifted.gather(1, targets[:, None])
            if target_shift is not None:
                target_values = target_values - target_shift[:, None]
            if floor:
                floor_far_below_row_max(shifted)
            shifted.scatter_(1, targets[:, None], target_values)
        log_q = torch.log_softmax(shifted, dim=1, out=shifted if in_place else None)
        ctx.save_for_backward(log_q, targets)
        ctx.scale = scale
        return -log_q.gather(1, targets[:, None]).squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_example):
        log_q, targets = ctx.saved_tensors
        # Cross-entropy's own backward kernel: log_softmax_backward(g, log q) = g - q * sum(g) with g = -s g_i onehot(y_i)
        # gives s g_i (q_i - onehot(y_i)) in one fused, multithreaded pass, as F.cross_entropy's backward does.
        row_scale = (ctx.scale * grad_per_example)[:, None]
        grad_log_q = torch.zeros_like(log_q).scatter_(1, targets[:, None], -row_scale)
        grad_logits = torch._log_softmax_backward_data(grad_log_q, log_q, 1, log_q.dtype)
        # Shifts that require grad (a learned prior): dL/db_c = sum_i dL/dshifted_ic, dL/dt_i = -dL/dshifted_iy_i.
        grad_column = grad_target = None
        if ctx.needs_input_grad[3]:
            grad_column = grad_logits.sum(dim=0) / ctx.scale
        if ctx.needs_input_grad[4]:
            grad_target = -grad_logits.gather(1, targets[:, None]).squeeze(1) / ctx.scale
        return grad_logits, None, None, grad_column, grad_target
