"""Priors of the box classifier: class weights from counts, the C+1-way source prior and target priors.

Background decision (the papers do not make one for detection; documented in `lt_detectron/config.py`):
the C+1-way heads treat background as class C with source prior `b = 1 - ROI_HEADS.POSITIVE_FRACTION`
(the RoI sampler's background fraction, or `MODEL.LT.BACKGROUND_PRIOR` when set), and the foreground
classes share `1 - b` in proportion to `n_c`. At inference the target prior keeps the background's mass
`b` and spreads `1 - b` over the foreground classes by `MODEL.LT.TEST_TARGET_PRIOR`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings

import torch

__all__ = [
    "resolve_background_prior",
    "prior_counts",
    "weights_from_counts",
    "detection_source_prior",
    "detection_target_prior",
    "load_foreground_prior",
]

logger = logging.getLogger(__name__)


def weights_from_counts(counts, zero_count_policy: str, **kwargs) -> torch.Tensor:
    """`lt_detectron.losses.class_weights` under the config's zero-count policy.

    read_class_counts has already warned about the unseen classes, so the loss library's warning is muted.
    """
    from lt_detectron.losses import class_weights

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="class_weights: classes .* have no training samples")
        return class_weights(
            torch.as_tensor(counts, dtype=torch.float64).cpu(), zero_policy=zero_count_policy, **kwargs
        )


def prior_counts(counts) -> torch.Tensor:
    """Counts used for priors and LDAM margins: unseen classes are treated as seen once (no log 0)."""
    return torch.as_tensor(counts, dtype=torch.float64).clamp_min(1.0)


def resolve_background_prior(cfg) -> float:
    """Background source prior b: MODEL.LT.BACKGROUND_PRIOR, or 1 - POSITIVE_FRACTION when it is -1."""
    b = float(cfg.MODEL.LT.BACKGROUND_PRIOR)
    if b < 0:
        b = 1.0 - float(cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION)
    if not 0.0 < b < 1.0:
        raise ValueError(
            f"The background prior must lie in (0, 1), got {b} (MODEL.LT.BACKGROUND_PRIOR, or "
            "1 - MODEL.ROI_HEADS.POSITIVE_FRACTION when it is -1); set MODEL.LT.BACKGROUND_PRIOR to e.g. 0.75."
        )
    return b


def _with_background(fg_prior: torch.Tensor, background_prior: float) -> torch.Tensor:
    fg = fg_prior / fg_prior.sum()
    return torch.cat([fg * (1.0 - background_prior), fg.new_tensor([background_prior])]).float()


def detection_source_prior(counts, background_prior: float) -> torch.Tensor:
    """C+1 source prior: foreground `(1 - b) * n_c / N`, background `b`."""
    return _with_background(prior_counts(counts), background_prior)


def load_foreground_prior(spec: str, counts) -> torch.Tensor:
    """Foreground target prior q (length C, sums to 1) from "uniform", "source" or a json file path."""
    counts = prior_counts(counts)
    num = counts.numel()
    if spec == "uniform":
        return torch.full((num,), 1.0 / num, dtype=torch.float64)
    if spec == "source":
        return counts / counts.sum()
    if not os.path.isfile(spec):
        raise ValueError(
            f"MODEL.LT.TEST_TARGET_PRIOR = {spec!r} is neither 'uniform', 'source' nor an existing json "
            "file; give a path to a json list of per-class priors."
        )
    try:
        with open(spec) as f:
            values = json.load(f)
        prior = torch.as_tensor(values, dtype=torch.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{spec}: MODEL.LT.TEST_TARGET_PRIOR must be a json list of {num} non-negative numbers ({e})."
        ) from e
    if prior.shape != (num,) or not torch.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(
            f"{spec}: MODEL.LT.TEST_TARGET_PRIOR must be a json list of {num} non-negative numbers with a "
            f"positive sum (one per class, in contiguous class order); got shape {tuple(prior.shape)}."
        )
    return prior / prior.sum()


def detection_target_prior(spec: str, counts, background_prior: float) -> torch.Tensor:
    """C+1 target prior: background keeps `b`, foreground gets `(1 - b) * q_c` with q from `spec`."""
    return _with_background(load_foreground_prior(spec, counts), background_prior)
