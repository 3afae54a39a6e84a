"""LDAM margin loss and its deferred re-weighting (DRW) schedule (Cao et al., NeurIPS 2019, arXiv:1906.07413)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import (
    ArrayLike,
    check_class_weight,
    check_counts,
    check_logits_targets,
    check_reduction,
    format_indices,
    memoized,
    reduce_loss,
)
from .class_weights import class_weights
from .shifted_cross_entropy import shifted_cross_entropy


@dataclass(frozen=True)
class LDAMDefaults:
    """Paper defaults of LDAM and DRW (Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
    Loss", NeurIPS 2019, arXiv:1906.07413): largest margin 0.5, scale s = 30, a normalised (cosine) last layer, and
    deferred re-weighting with effective-number weights (beta 0.9999) from epoch 160 of 200.

    Attributes:
        max_margin: the largest margin, max_c Delta_c.
        scale: the logit scale s.
        cosine_classifier: use a normalised (cosine) last layer.
        drw_beta: effective-number beta of the DRW weights.
        drw_start_fraction: where DRW starts, as a fraction of the training length.
    """

    max_margin: float = 0.5
    scale: float = 30.0
    cosine_classifier: bool = True
    drw_beta: float = 0.9999
    drw_start_fraction: float = 0.8  # of the training length: 160 of 200 epochs


LDAM_DEFAULTS = LDAMDefaults()


def ldam_margins(counts: ArrayLike, max_margin: float = LDAM_DEFAULTS.max_margin) -> torch.Tensor:
    """Margins `Delta_c = K / n_c^{1/4}`, K such that `max_c Delta_c = max_margin` (Cao et al. 2019 §3.2).

    Returned in float64 on the device of `counts`; classes with n_c = 0 have no finite margin and raise.

    Args:
        counts: length-C training counts n_c (> 0).
        max_margin: the largest margin (>= 0), that of the rarest class.

    Returns:
        (C,) float64 margins Delta_c.
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
    max_margin: float = LDAM_DEFAULTS.max_margin,
    scale: float = LDAM_DEFAULTS.scale,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    *,
    margins: ArrayLike | None = None,
) -> torch.Tensor:
    """`w_{y_i} * CE(s * (z_i - Delta_{y_i} onehot(y_i)), y_i)`, batch mean (Cao et al. 2019 §3.2).

    `weight` (e.g. from `drw_weights`) re-weights per class; None = unweighted. Margins come from `counts` via
    `ldam_margins`, or are given directly as `margins` (counts=None), e.g. foreground margins plus a background
    column with margin 0 in detection.

    Args:
        logits: (B, C) logits.
        targets: (B,) integer class indices in [0, C).
        counts: length-C training counts n_c (> 0) the margins come from; None when `margins` is given.
        max_margin: the largest margin (with `counts`).
        scale: the logit scale s.
        weight: optional length-C class weights w_c (>= 0); None = unweighted.
        reduction: "mean" (sum over the batch divided by B, 0 for an empty batch), "sum" or "none".
        margins: length-C margins Delta_c (>= 0), instead of `counts`.

    Returns:
        The scalar loss, or the (B,) per-example losses for reduction="none".
    """
    fn = "ldam_loss"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    if (counts is None) == (margins is None):
        raise ValueError(f"{fn}: pass exactly one of `counts` (margins K / n_c^(1/4)) and `margins`.")
    if margins is None:
        margins = memoized(
            counts,
            ("ldam_margins", logits.shape[1], max_margin, logits.dtype, logits.device),
            lambda: _margins(check_counts(counts, fn, num_classes=logits.shape[1]), max_margin).to(logits),
        )
    else:
        # Same contract as a class weight: length C, finite, >= 0.
        margins = check_class_weight(margins, logits.shape[1], fn, logits, name="margins")

    # s * Delta_c, subtracted from the target logit only (memoized: margins are a constant buffer).
    target_shift = memoized(margins, ("scaled", scale), lambda: scale * margins)
    if weight is None:
        return shifted_cross_entropy(logits, targets, scale, target_shift=target_shift, reduction=reduction)
    per_example = shifted_cross_entropy(logits, targets, scale, target_shift=target_shift) * weight[targets]
    return reduce_loss(per_example, reduction)


def drw_weights(counts: ArrayLike, step: int, start: int, beta: float = LDAM_DEFAULTS.drw_beta) -> torch.Tensor | None:
    """Deferred re-weighting: None before `start` (or when start < 0), effective-number weights after
    (Cao et al. 2019, DRW).

    Cao et al. switch at epoch 160 of 200 on CIFAR; `step` and `start` are in whatever unit the caller counts.

    Args:
        counts: length-C training counts n_c.
        step: the current step (epoch or iteration).
        start: the first re-weighted step; < 0 = never.
        beta: effective-number beta.

    Returns:
        None, or (C,) weights normalised to sum to C (`class_weights`).
    """
    if start < 0 or step < start:
        return None
    return class_weights(counts, kind="effective_number", beta=beta)


class DeferredReweighting:
    """The deferred re-weighting switch: no class weights before `start`, effective-number weights from `start` on.

    `start < 0` never switches on. `step` and `start` are in the caller's unit (classification: epochs; detection:
    iterations). The weights do not change once switched on, so they are computed once (on the CPU, float of the
    default dtype); callers move them to their device and, for detection, append the background weight.

    Args:
        counts: length-C training counts n_c.
        start: the first re-weighted step; < 0 = never.
        beta: effective-number beta.
    """

    def __init__(self, counts: ArrayLike, start: int, beta: float = LDAM_DEFAULTS.drw_beta) -> None:
        self.counts = check_counts(counts, "DeferredReweighting").cpu()
        self.start = int(start)
        self.beta = float(beta)
        self._weights: torch.Tensor | None = None

    @property
    def enabled(self) -> bool:
        """Whether the weights ever switch on (start >= 0)."""
        return self.start >= 0

    def weights(self, step: int) -> torch.Tensor | None:
        """None before the switch (or when disabled), the class weights from `start` on.

        Args:
            step: the current step, in the unit of `start`.

        Returns:
            None, or the (C,) CPU weights of `drw_weights`.
        """
        if not self.enabled or step < self.start:
            return None
        if self._weights is None:
            self._weights = drw_weights(self.counts, step, self.start, self.beta)
        return self._weights

    def __repr__(self) -> str:
        return f"DeferredReweighting(start={self.start}, beta={self.beta})"
