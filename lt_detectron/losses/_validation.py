"""Input checks shared by the loss functions.

Every error names the function, the argument and the fix, because these functions are reached from
config files (counts, priors) and from heads (shapes) far away from where the mistake was made.
"""

from __future__ import annotations

import math
from typing import Callable, Hashable, Sequence, TypeVar, Union

import numpy as np
import torch
from torch.utils.weak import WeakIdKeyDictionary

from ..utils import torch_compat

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]

# A prior built as counts / counts.sum() in float32 is off by ~1e-6; a hand-written one by rounding.
PRIOR_SUM_TOLERANCE = 1e-3
REDUCTIONS = ("mean", "sum", "none")

# Where a per-class vector usually comes from, appended to its error's fix.
FIX_HINTS = {
    "weight": ", e.g. lt_detectron.losses.class_weights(counts) (see its zero_policy)",
    "margins": ", e.g. lt_detectron.losses.ldam_margins(counts)",
}
T = TypeVar("T")
# Per constant tensor: (its version counter, {key: result}). Priors, margins and class weights are the same buffer on
# every call, and checking one costs device syncs that a small cross-entropy cannot hide.
_MEMO: WeakIdKeyDictionary = WeakIdKeyDictionary()


def memoized(tensor: object, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, remembered for this tensor until it is modified in place (its version counter moves).

    Only for plain tensors outside autograd and torch.func: a result derived from a tensor that requires grad must be
    recomputed to stay in the graph. A failing `compute` raises every time; nothing is remembered.
    """
    if (
        type(tensor) is not torch.Tensor
        or tensor.requires_grad
        or torch.is_inference_mode_enabled()
        or torch_compat.functorch_transforms_active()
    ):
        return compute()
    version = tensor._version
    entry = _MEMO.get(tensor)
    if entry is None or entry[0] != version:
        entry = (version, {})
        _MEMO[tensor] = entry
    if key not in entry[1]:
        entry[1][key] = compute()
    return entry[1][key]


def format_indices(mask: torch.Tensor, limit: int = 10) -> str:
    """'[3, 7] (2 classes)' for the True entries of a 1-D mask, truncated after `limit` indices."""
    indices = torch.nonzero(mask).flatten().tolist()
    shown = ", ".join(str(i) for i in indices[:limit]) + (", ..." if len(indices) > limit else "")
    return f"[{shown}] ({len(indices)} class{'es' if len(indices) != 1 else ''})"


def as_tensor_like(values: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    """`values` on `like`'s device in its dtype, but at least float32 (a float16 prior of a rare class would be 0);
    lists go through float64 (a float32 detour would lose precision)."""
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values, dtype=np.float64))
    return values.to(device=like.device, dtype=torch.promote_types(like.dtype, torch.float32))


def on_host(tensor: torch.Tensor) -> bool:
    """Whether reading `tensor`'s values is free: on the CPU yes; on an accelerator a read is a device-to-host sync
    that stalls every call, so checks that need values run on the CPU only and losses pick read-free paths."""
    return tensor.device.type == "cpu"


def check_logits_targets(logits: torch.Tensor, targets: torch.Tensor, fn: str) -> torch.Tensor:
    """Check `logits` (B, C) floating and `targets` (B,) integer in [0, C); return targets as int64."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        got = f"{tuple(logits.shape)} {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"{fn}: `logits` must be a floating tensor of shape (B, C); got {got}. "
            "Fix: pass one row of class scores per sample (flatten extra dimensions first)."
        )
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.is_complex():
        got = targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"{fn}: `targets` must be an integer tensor of class indices; got {got}. Fix: targets.long().")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"{fn}: `targets` must have shape (B,) = ({logits.shape[0]},) to match `logits` {tuple(logits.shape)}; "
            f"got {tuple(targets.shape)}. Fix: pass one class index per logits row (not one-hot)."
        )
    num_classes = logits.shape[1]
    # Reading the range back is a device-to-host sync in every loss call on an accelerator; there the kernels that
    # index with the targets (nll_loss, gather, scatter) assert on an out-of-range value themselves.
    if targets.numel() > 0 and on_host(targets):
        low, high = torch.aminmax(targets)
        if low.item() < 0 or high.item() >= num_classes:
            raise ValueError(
                f"{fn}: `targets` must lie in [0, {num_classes - 1}] for {num_classes} logit columns; got values in "
                f"[{low.item()}, {high.item()}]. Fix: map labels to contiguous 0-based ids (detection: background = C)."
            )
    return targets.long()


def check_counts(counts: ArrayLike, fn: str, name: str = "counts", num_classes: int | None = None) -> torch.Tensor:
    """Check per-class training counts n_c (1-D, finite, >= 0); return them as float64 on their own device."""
    tensor = counts if isinstance(counts, torch.Tensor) else torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(
            f"{fn}: `{name}` must be a non-empty 1-D sequence of per-class training counts; got shape "
            f"{tuple(tensor.shape)}. Fix: pass n_c for every class, e.g. lt_detectron.data.class_counts(...)."
        )
    if num_classes is not None and tensor.numel() != num_classes:
        raise ValueError(
            f"{fn}: `{name}` has {tensor.numel()} entries but the logits have {num_classes} columns. "
            "Fix: give one count per logit column (detection: C foreground classes + 1 background)."
        )
    tensor = tensor.to(torch.float64)
    # .item() per element, not .tolist(): tolist fails inside torch.func transforms (the meta-weighting engine).
    total, smallest = (v.item() for v in torch.stack([tensor.sum(), tensor.min()]))
    if not math.isfinite(total):
        raise ValueError(f"{fn}: `{name}` contains NaN or inf at classes {format_indices(~torch.isfinite(tensor))}.")
    if smallest < 0:
        negative = tensor < 0
        raise ValueError(
            f"{fn}: `{name}` must be >= 0; classes {format_indices(negative)} are negative. "
            "Fix: counts are numbers of training samples per class."
        )
    return tensor


def check_prior(
    prior: ArrayLike,
    num_classes: int,
    fn: str,
    like: torch.Tensor,
    name: str = "prior",
    allow_zeros: bool = False,
) -> torch.Tensor:
    """Check a class distribution of length C summing to 1; return it with `like`'s dtype and device.

    `allow_zeros=False` where log(prior) enters a loss (a zero would give -inf and NaN gradients). Checked once per
    version of a constant tensor (`memoized`).
    """
    key = ("prior", num_classes, fn, name, allow_zeros, like.dtype, like.device)
    return memoized(prior, key, lambda: _check_prior(prior, num_classes, fn, like, name, allow_zeros))


def _check_prior(
    prior: ArrayLike, num_classes: int, fn: str, like: torch.Tensor, name: str, allow_zeros: bool
) -> torch.Tensor:
    tensor = as_tensor_like(prior, like)
    if tensor.shape != (num_classes,):
        raise ValueError(
            f"{fn}: `{name}` must have shape (C,) = ({num_classes},) to match the logits; got {tuple(tensor.shape)}. "
            "Fix: one probability per logit column (detection: C foreground classes + 1 background)."
        )
    if tensor.device.type == "meta":
        return tensor  # no values to check (shape inference, tracing)
    # .item() per element, not .tolist(): tolist fails inside torch.func transforms (the meta-weighting engine).
    total, smallest = (v.item() for v in torch.stack([tensor.sum(), tensor.min()]))
    if not math.isfinite(total) or smallest < 0:
        raise ValueError(
            f"{fn}: `{name}` must be finite and >= 0; classes {format_indices(~(tensor >= 0))} are not. "
            "Fix: a prior is a probability per class, e.g. prior_from_counts(counts)."
        )
    if abs(total - 1.0) > PRIOR_SUM_TOLERANCE:
        raise ValueError(
            f"{fn}: `{name}` must sum to 1; it sums to {total:.6g}. Fix: normalise it, e.g. "
            "lt_detectron.losses.prior_from_counts(counts)."
        )
    if not allow_zeros and smallest <= 0:
        raise ValueError(
            f"{fn}: `{name}` is zero for classes {format_indices(tensor <= 0)}, and its log enters the loss. "
            "Fix: drop classes without training samples, or build the prior from counts + a pseudo-count."
        )
    return tensor


def check_class_weight(
    weight: ArrayLike | None, num_classes: int, fn: str, like: torch.Tensor, name: str = "weight"
) -> torch.Tensor | None:
    """Check optional per-class loss weights w_c (length C, finite, >= 0); return them like `like` (memoized)."""
    if weight is None:
        return None
    key = ("class_weight", num_classes, fn, name, like.dtype, like.device)
    return memoized(weight, key, lambda: _check_class_weight(weight, num_classes, fn, like, name))


def _check_class_weight(weight: ArrayLike, num_classes: int, fn: str, like: torch.Tensor, name: str) -> torch.Tensor:
    tensor = as_tensor_like(weight, like)
    if tensor.shape != (num_classes,):
        raise ValueError(
            f"{fn}: `{name}` must have shape (C,) = ({num_classes},); got {tuple(tensor.shape)}. "
            f"Fix: one value per logit column{FIX_HINTS.get(name, '')}."
        )
    if tensor.device.type == "meta":
        return tensor  # no values to check (shape inference, tracing)
    if not torch.isfinite(tensor).all() or (tensor < 0).any():
        hint = FIX_HINTS.get(name, "")
        raise ValueError(f"{fn}: `{name}` must be finite and >= 0. Fix: one value >= 0 per class{hint}.")
    return tensor


def class_histogram(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Samples per class id, int64 of length `num_classes`; ids must lie in [0, num_classes).

    Not `torch.bincount`: it sizes its output from the largest id, a device-to-host read on an accelerator."""
    counts = torch.zeros(num_classes, dtype=torch.long, device=targets.device)
    return counts.index_add_(0, targets, torch.ones_like(targets, dtype=torch.long))


def log_of(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor.log()`, memoized for a constant tensor (a checked prior)."""
    return memoized(tensor, "log", tensor.log)


def check_reduction(reduction: str, fn: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: `reduction` must be one of {REDUCTIONS}; got {reduction!r}.")


def reduce_loss(per_example: torch.Tensor, reduction: str) -> torch.Tensor:
    """'mean' is the batch mean of the (weighted) per-example losses; an empty batch gives 0.

    The batch-mean convention is explained in docs/methods.md#conventions.
    """
    if reduction == "none":
        return per_example
    total = per_example.sum()
    return total if reduction == "sum" else total / max(per_example.numel(), 1)
