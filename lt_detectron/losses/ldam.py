"""LDAM margin loss and its deferred re-weighting (DRW) schedule (METHODS §2; Cao et al. 2019)."""

from __future__ import annotations

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
    fn = "ldam_margins"
    if bool((n <= 0).any()):
        raise ValueError(
            f"{fn}: LDAM's margin K / n_c^(1/4) is infinite for classes {format_indices(n <= 0)} with zero count. "
            "Fix: drop these classes from the label space, or give them a count of at least 1."
        )
    if max_margin < 0:
        raise ValueError(f"{fn}: max_margin must be >= 0; got {max_margin}.")
    inv_fourth_root = n.pow(-0.25)
    return inv_fourth_root * (max_margin / inv_fourth_root.max())


def ldam_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    counts: ArrayLike,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """`w_{y_i} * CE(s * (z_i - Delta_{y_i} onehot(y_i)), y_i)`, batch mean (METHODS §2; Cao et al. 2019 §3.2).

    `weight` (e.g. from `drw_weights`) re-weights per class; None = unweighted.
    """
    fn = "ldam_loss"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    counts = check_counts(counts, fn, num_classes=logits.shape[1])
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    margins = _margins(counts, max_margin).to(device=logits.device, dtype=logits.dtype)

    scaled = logits * scale
    # Subtract s * Delta_y from the target logit only; in place on `scaled` to avoid a second (B, C) tensor
    # (the backward of a multiplication by a Python scalar does not need its output).
    scaled.scatter_add_(1, targets[:, None], (-scale * margins[targets])[:, None])
    return reduce_loss(F.cross_entropy(scaled, targets, weight=weight, reduction="none"), reduction)


def drw_weights(counts: ArrayLike, step: int, start: int, beta: float = 0.9999) -> torch.Tensor | None:
    """Deferred re-weighting: None before `start` (or when start < 0), effective-number weights after (METHODS §2).

    Cao et al. switch at epoch 160 of 200 on CIFAR; `step` and `start` are in whatever unit the caller counts.
    """
    if start < 0 or step < start:
        return None
    return class_weights(counts, kind="effective_number", beta=beta)
