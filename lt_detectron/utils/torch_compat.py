"""The one door to private torch entry points, each with a plain-autograd fallback.

The losses reuse cross-entropy's own ATen kernels inside hand-written backward passes (one (B, C) buffer and the
fused kernels instead of a chain of autograd ops) and ask whether a `torch.func` transform is running (the
meta-weighting engine differentiates losses twice, which those backward passes do not support). These entry points
are not public API: they can change or disappear between torch releases. Every use goes through this module, which
looks each one up once and falls back to public operations when it is missing:

- `functorch_transforms_active()`: `torch._C._are_functorch_transforms_active`. Without it the answer is "yes",
  which sends the losses down their composed, twice-differentiable autograd path: slower, never wrong.
- `log_softmax_backward(grad, log_q, dim)`: `torch._log_softmax_backward_data`, else `grad - exp(log_q) * sum(grad)`.
- `nll_loss_forward(log_q, targets, reduction)` / `nll_loss_backward(...)`: `torch.ops.aten.nll_loss_forward` /
  `nll_loss_backward`, else `F.nll_loss` and a scatter of the target entries.

`use_fallback()` forces fallbacks (tests compare the paths); `missing_entry_points()` names what this torch lacks.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

# nll_loss's reduction codes (ATen's Reduction enum).
REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}
IGNORE_INDEX = -100


def _lookup(owner: object, name: str) -> Callable | None:
    """`owner.name` if this torch has it. `torch.ops.aten` raises (AttributeError or RuntimeError) for unknown ops."""
    try:
        return getattr(owner, name)
    except (AttributeError, RuntimeError):
        return None


_ARE_TRANSFORMS_ACTIVE = _lookup(torch._C, "_are_functorch_transforms_active")
_LOG_SOFTMAX_BACKWARD = _lookup(torch, "_log_softmax_backward_data")
_NLL_FORWARD = _lookup(torch.ops.aten, "nll_loss_forward")
_NLL_BACKWARD = _lookup(torch.ops.aten, "nll_loss_backward")

_ENTRY_POINTS = {
    "torch._C._are_functorch_transforms_active": _ARE_TRANSFORMS_ACTIVE,
    "torch._log_softmax_backward_data": _LOG_SOFTMAX_BACKWARD,
    "torch.ops.aten.nll_loss_forward": _NLL_FORWARD,
    "torch.ops.aten.nll_loss_backward": _NLL_BACKWARD,
}
_forced: frozenset[str] = frozenset()


def missing_entry_points() -> list[str]:
    """The private entry points this torch does not have (their fallbacks are in use)."""
    return [name for name, fn in _ENTRY_POINTS.items() if fn is None]


@contextlib.contextmanager
def use_fallback(*entry_points: str, enabled: bool = True) -> Iterator[None]:
    """Within the block the named entry points (default: all) take their public-API fallback, as on a torch that
    lacks them; `enabled=False` restores the private path inside an outer block."""
    global _forced
    names = set(entry_points or _ENTRY_POINTS)
    unknown = names - set(_ENTRY_POINTS)
    if unknown:
        raise ValueError(f"use_fallback: unknown entry points {sorted(unknown)}; known: {sorted(_ENTRY_POINTS)}.")
    previous = _forced
    _forced = (previous | names) if enabled else (previous - names)
    try:
        yield
    finally:
        _forced = previous


def _private(name: str) -> Callable | None:
    return None if name in _forced else _ENTRY_POINTS[name]


def functorch_transforms_active() -> bool:
    """True inside a `torch.func` transform (grad, vmap, ...). Without the entry point: True (the safe answer)."""
    fn = _private("torch._C._are_functorch_transforms_active")
    return True if fn is None else bool(fn())


def log_softmax_backward(grad: torch.Tensor, log_q: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Gradient of `log_softmax` with respect to its input, given its output `log_q`: `grad - q * sum(grad)`."""
    fn = _private("torch._log_softmax_backward_data")
    if fn is not None:
        return fn(grad, log_q, dim, log_q.dtype)
    return grad - log_q.exp() * grad.sum(dim=dim, keepdim=True)


def nll_loss_forward(log_q: torch.Tensor, targets: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`(loss, total_weight)` of the negative log-likelihood of (B, C) `log_q` at int64 `targets` (no class weights,
    no ignored index): "none" per example, "sum", or "mean" over the batch; total_weight is B as `log_q`'s dtype."""
    fn = _private("torch.ops.aten.nll_loss_forward")
    if fn is not None:
        return fn(log_q, targets, None, REDUCTION_CODES[reduction], IGNORE_INDEX)
    loss = F.nll_loss(log_q, targets, reduction=reduction)
    return loss, torch.full((), float(targets.numel()), dtype=log_q.dtype, device=log_q.device)


def nll_loss_backward(
    grad: torch.Tensor, log_q: torch.Tensor, targets: torch.Tensor, reduction: str, total_weight: torch.Tensor
) -> torch.Tensor:
    """Gradient of `nll_loss_forward` with respect to `log_q`: `-grad_i` (over total_weight for "mean") at each
    example's target column, zero elsewhere."""
    fn = _private("torch.ops.aten.nll_loss_backward")
    if fn is not None:
        return fn(grad, log_q, targets, None, REDUCTION_CODES[reduction], IGNORE_INDEX, total_weight)
    if reduction == "none":
        values = -grad
    else:
        scale = -grad / total_weight if reduction == "mean" else -grad
        values = scale.expand(targets.shape)
    return torch.zeros_like(log_q).scatter_(1, targets[:, None], values[:, None].to(log_q.dtype))
