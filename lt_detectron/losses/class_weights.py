"""Per-class weights w_c and priors p_s(c) from training counts n_c (docs/methods.md#class-weights)."""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
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

    Classes with n_c = 0 raise, or with zero_policy="exclude" get weight 0 (a warning names them) and the remaining
    classes are weighted as if the excluded ones did not exist.

    Args:
        counts: length-C training counts n_c (finite, >= 0, not all zero).
        kind: "inverse" (w ∝ 1/n_c), "effective_number" (w = (1-beta)/(1-beta^n_c)) or "lda" (1/(C n_c), C = the
            number of classes with n_c > 0; never normalised, its scale is part of the LDA loss).
        beta: effective-number beta in [0, 1); None = (N-1)/N, N = sum_c n_c (`effective_number_beta`).
            Only used by kind="effective_number".
        normalize: scale the weights to sum to the number of weighted classes (n_c > 0). Ignored for "lda".
        zero_policy: "error" (raise on a zero count), "exclude" or its alias "warn" (weight 0, with a warning).
        dtype: dtype of the result; None = the default dtype.

    Returns:
        (C,) weights w_c in `dtype` on the device of `counts`; 0 for excluded classes.
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
            beta = effective_number_beta(n)
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


def effective_number_beta(counts: ArrayLike) -> float:
    """The default effective-number beta `(N - 1) / N`, N = sum_c n_c (Jamal et al., CVPR 2020, arXiv:2003.10780).

    Cui et al. (CVPR 2019, arXiv:1901.05555) use a fixed 0.9999 instead; configs choose between the two.

    Args:
        counts: length-C training counts n_c (finite, >= 0, not all zero).

    Returns:
        beta in [0, 1).
    """
    total = float(check_counts(counts, "effective_number_beta").sum())
    if total <= 0:
        raise ValueError("effective_number_beta: all counts are zero. Fix: pass the training counts n_c per class.")
    return (total - 1.0) / total


def prior_from_counts(counts: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Source prior p_s(c) = n_c / N (notation of docs/methods.md#notation), checked like any counts.

    Args:
        counts: length-C training counts n_c (finite, >= 0, not all zero).
        dtype: dtype of the result; None = the default dtype.

    Returns:
        (C,) prior summing to 1, in `dtype` on the device of `counts`.
    """
    n = check_counts(counts, "prior_from_counts")
    total = float(n.sum())
    if total <= 0:
        raise ValueError("prior_from_counts: all counts are zero. Fix: pass the training counts n_c per class.")
    return (n / total).to(dtype or torch.get_default_dtype())


TARGET_PRIOR_NAMES = ("uniform", "source")


def parse_target_prior(spec: str, counts: ArrayLike, key: str = "target prior") -> torch.Tensor:
    """Target prior p_t (float64, length C, sums to 1) from a spec.

    Args:
        spec: "uniform"; "source" (the training prior n_c / N of `counts`); a path to a json file holding a list of C
            non-negative numbers; or the numbers themselves, "n1 n2 ... nC" or "n1,...,nC". Numbers are normalised.
        counts: length-C training counts n_c: they give C, and the prior for "source".
        key: the config key named in error messages (e.g. "MODEL.LT.TEST_TARGET_PRIOR").

    Returns:
        (C,) float64 CPU tensor summing to 1.
    """
    n = check_counts(counts, "parse_target_prior")
    num = n.numel()
    spec = str(spec).strip()
    source = f"{key} = {spec!r}"
    if spec == "uniform":
        return torch.full((num,), 1.0 / num, dtype=torch.float64)
    if spec == "source":
        return prior_from_counts(n.cpu(), dtype=torch.float64)
    if os.path.isfile(spec):
        source = f"{spec}: {key}"
        try:
            with open(spec) as f:
                values = np.asarray(json.load(f), dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source} must be a json list of {num} non-negative numbers ({e}).") from None
    else:
        try:
            values = np.asarray([float(v) for v in spec.replace(",", " ").split()], dtype=np.float64)
        except ValueError:
            raise ValueError(
                f"{source} is neither {' nor '.join(repr(k) for k in TARGET_PRIOR_NAMES)}, an existing json file "
                "nor a list of numbers; give a path to a json list of per-class priors, or the numbers themselves."
            ) from None
    if values.shape != (num,) or not np.all(np.isfinite(values)) or values.min() < 0 or values.sum() <= 0:
        raise ValueError(
            f"{source} must be a list of {num} non-negative numbers with a positive sum (one per class, in "
            f"contiguous class order); got shape {values.shape}."
        )
    return torch.as_tensor(values / values.sum(), dtype=torch.float64)
