"""Priors of the box classifier: class weights from counts, the C+1-way source prior and target priors.

Background decision (the papers do not make one for detection; documented in `lt_detectron/config.py`):
the C+1-way heads treat background as class C with source prior `b = 1 - ROI_HEADS.POSITIVE_FRACTION`
(the RoI sampler's background fraction, or `MODEL.LT.BACKGROUND_PRIOR` when set), and the foreground
classes share `1 - b` in proportion to `n_c`. At inference the target prior keeps the background's mass
`b` and spreads `1 - b` over the foreground classes by `MODEL.LT.TEST_TARGET_PRIOR`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import torch

from lt_detectron.losses import class_weights, parse_target_prior, prior_from_counts

__all__ = [
    "resolve_background_prior",
    "prior_counts",
    "weights_from_counts",
    "detection_source_prior",
    "detection_target_prior",
    "load_foreground_prior",
    "zero_count_warning_muted",
]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def zero_count_warning_muted() -> Iterator[None]:
    """read_class_counts has already warned about the unseen classes: mute the loss library's repeat of it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="class_weights: classes .* have no training samples")
        yield


def weights_from_counts(counts, zero_count_policy: str, **kwargs) -> torch.Tensor:
    """`lt_detectron.losses.class_weights` under the config's zero-count policy (warning muted, see above)."""
    with zero_count_warning_muted():
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
    fg = prior_from_counts(fg_prior, dtype=torch.float64)
    return torch.cat([fg * (1.0 - background_prior), fg.new_tensor([background_prior])]).float()


def detection_source_prior(counts, background_prior: float) -> torch.Tensor:
    """C+1 source prior: foreground `(1 - b) * n_c / N`, background `b`."""
    return _with_background(prior_counts(counts), background_prior)


def load_foreground_prior(spec: str, counts) -> torch.Tensor:
    """Foreground target prior q (length C, sums to 1): `lt_detectron.losses.parse_target_prior` of the counts."""
    return parse_target_prior(spec, prior_counts(counts), key="MODEL.LT.TEST_TARGET_PRIOR")


def detection_target_prior(spec: str, counts, background_prior: float) -> torch.Tensor:
    """C+1 target prior: background keeps `b`, foreground gets `(1 - b) * q_c` with q from `spec`."""
    return _with_background(load_foreground_prior(spec, counts), background_prior)
