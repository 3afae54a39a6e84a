"""Class statistics of the box classifier: training counts, the C+1-way source prior and target priors.

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
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "read_class_counts",
    "resolve_background_prior",
    "prior_counts",
    "weights_from_counts",
    "detection_source_prior",
    "detection_target_prior",
    "load_foreground_prior",
]

logger = logging.getLogger(__name__)


def _class_names(dataset_names: Sequence[str], num: int) -> list[str]:
    from detectron2.data import MetadataCatalog

    for name in dataset_names:
        names = MetadataCatalog.get(name).get("thing_classes", None)
        if names is not None and len(names) == num:
            return list(names)
    return [f"class {i}" for i in range(num)]


def read_class_counts(cfg) -> np.ndarray:
    """Per-class training counts n_c of `cfg.DATASETS.TRAIN`, checked against the config.

    Raises ValueError when NUM_CLASSES disagrees with the datasets, or (ZERO_COUNT_POLICY "error")
    when a class never occurs in training; with "warn" those classes are named in a warning.
    """
    from lt_detectron.data import class_counts

    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError(
            "DATASETS.TRAIN is empty: the long-tail box classifiers need the training datasets to read "
            "the per-class counts n_c; set DATASETS.TRAIN, or use MODEL.LT.BOX_CLASSIFIER softmax."
        )
    source = cfg.MODEL.LT.CLASS_COUNT_SOURCE
    counts = np.asarray(class_counts(names, source=source), dtype=np.float64)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if counts.shape != (num_classes,):
        raise ValueError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but the training datasets {list(names)} have "
            f"{counts.shape[0]} categories; set MODEL.ROI_HEADS.NUM_CLASSES: {counts.shape[0]} in the config."
        )
    zero = np.flatnonzero(counts <= 0)
    if zero.size:
        class_names = _class_names(names, num_classes)
        listed = ", ".join(f"{i} ({class_names[i]})" for i in zero[:20])
        more = f" and {zero.size - 20} more" if zero.size > 20 else ""
        policy = cfg.MODEL.LT.ZERO_COUNT_POLICY
        msg = f"{zero.size} categories of {list(names)} never occur in training ({source} = 0): {listed}{more}."
        if policy == "error":
            raise ValueError(
                msg + " Their class weight 1/n_c is undefined. Remove them from the dataset, or set "
                "MODEL.LT.ZERO_COUNT_POLICY: warn to exclude them from the weighting."
            )
        if policy != "warn":
            raise ValueError(f"MODEL.LT.ZERO_COUNT_POLICY must be 'error' or 'warn', got {policy!r}.")
        warnings.warn(
            msg + " They get class weight 0 and are treated as seen once in priors and margins "
            "(MODEL.LT.ZERO_COUNT_POLICY: warn).",
            stacklevel=2,
        )
    return counts


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
