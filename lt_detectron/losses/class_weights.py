"""Per-class weights w_c and priors p_s(c) from training counts n_c (docs/methods.md#class-weights)."""

from __future__ import annotations

import math
import warnings

import torch

from ._validation import ArrayLike, check_counts, format_indices

WEIGHT_KINDS = ("inverse", "effective_number", "lda")
ZERO_POLICIES = ("error", "exclude", "warn")  # "warn" is an alias of "exclude" (the config's spelling)


def class_weights(
    counts: ArrayLike,
    kind: str = "effective_number",
    beta: float | None = None,
    normalize: bool = True,
    zero_policy: str = "error",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class weights w_c (effective number: Cui et al., CVPR 2019, arXiv:1901.05555;
    "lda": Peng et al., ACM MM 2021, arXiv:2110.02686; see docs/methods.md#class-weights).

    kind: "inverse" (w ∝ 1/n_c), "effective_number" (w = (1-beta)/(1-beta^n_c), beta None = (N-1)/N),
    "lda" (1/(C n_c); never normalised, its scale is part of the LDA loss). With `normalize`, weights sum to
    the number of weighted classes. Classes with n_c = 0 raise, or with zero_policy="exclude" get weight 0
    (a warning names them) and the remaining classes are weighted as if the excluded ones did not exist.
    Returns a tensor of `dtype` (default dtype when None) on the device of `counts`.
    """
    fn = "class_weights"
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"{fn}: unknown kind {kind!r}; known kinds: {', '.join(WEIGHT_KINDS)}.")
    if zero_policy not in ZERO_POLICIES:
        raise ValueError(f"{fn}: zero_policy must be one of {ZERO_POLICIES}; got {zero_policy!r}.")
    n = check_counts(counts, fn)
    present = n > 0
    if not present.any():
        raise ValueError(f"{fn}: all {n.numel()} counts are zero. Fix: pass the training counts n_c per class.")
    if not present.all():
        if zero_policy == "error":
            raise ValueError(
                f"{fn}: `counts` is zero for classes {format_indices(~present)}, whose weight would be infinite. "
                "Fix: pass zero_policy='exclude' (config MODEL.LT.ZERO_COUNT_POLICY: warn) to give them weight 0, "
                "or drop these classes from the label space."
            )
        warnings.warn(
            f"{fn}: classes {format_indices(~present, limit=50)} have no training samples; "
            "they get weight 0 and are excluded from the weighting.",
            stacklevel=2,
        )
    n_used = n[present]
    num_used = n_used.numel()

    if kind == "inverse":
        weights = 1.0 / n_used
    elif kind == "effective_number":
        if beta is None:
            total = float(n.sum())
            beta = (total - 1.0) / total
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{fn}: effective-number beta must be in [0, 1); got {beta}. Cui et al. use 0.9999.")
        # 1 - beta^n = -expm1(n log beta): exact for beta close to 1, where 1 - beta**n would cancel.
        log_beta = math.log(beta) if beta > 0.0 else -math.inf
        weights = (1.0 - beta) / -torch.expm1(n_used * log_beta)
    else:  # "lda"
        weights = 1.0 / (num_used * n_used)

    if normalize and kind != "lda":
        weights = weights * (num_used / weights.sum())
    out = torch.zeros_like(n)
    out[present] = weights
    return out.to(dtype or torch.get_default_dtype())


def prior_from_counts(counts: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Source prior p_s(c) = n_c / N (notation of docs/methods.md#notation), checked like any counts."""
    n = check_counts(counts, "prior_from_counts")
    total = float(n.sum())
    if total <= 0:
        raise ValueError("prior_from_counts: all counts are zero. Fix: pass the training counts n_c per class.")
    return (n / total).to(dtype or torch.get_default_dtype())
