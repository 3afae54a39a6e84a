"""Post-hoc score calibration: NorCal (Pan et al., "On Model Calibration for Long-Tailed Object Detection and
Instance Segmentation", NeurIPS 2021, arXiv:2107.02170).

A detector trained with plain cross-entropy over C foreground classes and a background is recalibrated at test time:
each foreground class's exponentiated score is divided by its training sample size to the power gamma, the background
score is left alone, and the scores are renormalised over all C + 1 columns.
"""

from __future__ import annotations

import math

import torch

from ._validation import ArrayLike, check_counts, memoized


def norcal_probs(logits: torch.Tensor, counts: ArrayLike, gamma: float) -> torch.Tensor:
    """NorCal probabilities `exp(z_c) / n_c^gamma` (background: `exp(z_C)`), renormalised (Pan et al. 2021, NorCal).

    Computed in log space as softmax([z_c - gamma log n_c for c < C, z_C]), so large logits neither overflow nor
    underflow. gamma = 0 is the plain softmax. A count of 0 (a class never seen in training) is clamped at 1, as if
    the class had been seen once, so its score is left as it is instead of being divided by 0.

    Args:
        logits: (..., C + 1) logits, background last.
        counts: length-C training counts n_c of the foreground classes (image or instance counts, as the model was
            calibrated with), >= 0. A constant tensor is checked once per version.
        gamma: calibration exponent (finite, >= 0), tuned on held-out data.

    Returns:
        Probabilities of the logits' shape, summing to 1 over the last dimension; float32 for float16/bfloat16 logits.
    """
    fn = "norcal_probs"
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or not logits.is_floating_point():
        got = f"{tuple(logits.shape)} {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"{fn}: `logits` must be a floating tensor of shape (..., C + 1), background last; got {got}. "
            "Fix: pass the box classifier's C + 1 logits."
        )
    if logits.shape[-1] < 2:
        raise ValueError(
            f"{fn}: `logits` must have C + 1 >= 2 columns (C foreground classes, background last); got "
            f"{tuple(logits.shape)}."
        )
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{fn}: `gamma` must be a finite number >= 0 (0 = plain softmax); got {gamma!r}.")
    num_classes = logits.shape[-1] - 1
    work = logits.to(torch.promote_types(logits.dtype, torch.float32))
    key = ("norcal_log_counts", num_classes, work.dtype, work.device)
    log_counts = memoized(counts, key, lambda: _log_counts(counts, num_classes, fn, work))
    shift = torch.cat([log_counts * -float(gamma), log_counts.new_zeros(1)])
    return torch.softmax(work + shift, dim=-1)


def _log_counts(counts: ArrayLike, num_classes: int, fn: str, like: torch.Tensor) -> torch.Tensor:
    """log max(n_c, 1) in `like`'s dtype and device, after checking the counts (length C, finite, >= 0)."""
    shape = tuple(counts.shape) if isinstance(counts, torch.Tensor) else None
    if shape is not None and shape != (num_classes,):
        raise ValueError(
            f"{fn}: `counts` must have shape (C,) = ({num_classes},), one count per foreground class of the "
            f"{num_classes + 1} logit columns (background last, no count); got {shape}. Fix: pass the C foreground "
            "counts only."
        )
    if isinstance(counts, torch.Tensor) and counts.device.type == "meta":
        tensor = counts.to(torch.float64)  # no values to check (shape inference, tracing)
    else:
        tensor = check_counts(counts, fn)
        if tensor.numel() != num_classes:
            raise ValueError(
                f"{fn}: `counts` has {tensor.numel()} entries but the logits have C + 1 = {num_classes + 1} columns. "
                "Fix: pass one count per foreground class (C entries, no background count)."
            )
    return tensor.clamp_min(1.0).log().to(device=like.device, dtype=like.dtype)
