"""Post-hoc score calibration of a trained box classifier (TEST.LT_CALIBRATION), applied at inference only.

NorCal (Pan et al., NeurIPS 2021, arXiv:2107.02170): each foreground class's score is divided by n_c^gamma, the
background score is kept, and the C+1 scores are renormalised. On probabilities p = softmax(z) this equals
`lt_detectron.losses.norcal_probs(z, n, gamma)` (the softmax normaliser cancels), so it applies to any head whose
C+1 scores sum to 1 (softmax heads and LDA's p_fg-fused scores) and to any checkpoint, with --eval-only.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lt_detectron import losses as lt_losses

__all__ = [
    "CALIBRATIONS",
    "NorCal",
    "build_score_calibration",
    "calibrated",
    "calibration_counts",
    "per_image_probabilities",
]

CALIBRATIONS = ("none", "norcal")


class NorCal(nn.Module):
    """Divide foreground class scores by n_c^gamma, keep the background's, renormalise (Pan et al. 2021 eq. 4).

    Args:
        counts: (C,) training counts n_c of the foreground classes.
        gamma: calibration exponent (>= 0; TEST.LT_CALIBRATION_GAMMA); 0 leaves the scores as they are.
    """

    def __init__(self, counts: torch.Tensor, gamma: float) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"TEST.LT_CALIBRATION_GAMMA must be >= 0; got {gamma}.")
        self.gamma = float(gamma)
        # From the training sets at build time, never from a checkpoint.
        self.register_buffer("counts", torch.as_tensor(counts, dtype=torch.float32), persistent=False)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """(R, C+1) probabilities, background last -> calibrated (R, C+1) probabilities.

        Args:
            probs: (R, C+1) probabilities summing to 1 per row, background last.

        Returns:
            (R, C+1) calibrated probabilities summing to 1 per row.
        """
        return lt_losses.norcal_probs(probs.log(), self.counts.to(probs.device), self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, classes={self.counts.numel()}"


def build_score_calibration(cfg, predictor: nn.Module) -> Optional[nn.Module]:
    """The calibration named by TEST.LT_CALIBRATION for `predictor`, or None ("none").

    Args:
        cfg: the config: TEST.LT_CALIBRATION, TEST.LT_CALIBRATION_GAMMA and TEST.LT_CALIBRATION_COUNTS
            ("instance_count" or "image_count" of DATASETS.TRAIN; a class absent from training counts once).
        predictor: the box predictor; its `scores_sum_to_one` must not be False.

    Returns:
        A `NorCal` module, or None.
    """
    name = cfg.TEST.LT_CALIBRATION
    if name not in CALIBRATIONS:
        raise ValueError(f"TEST.LT_CALIBRATION must be one of {CALIBRATIONS}; got {name!r}.")
    if name == "none":
        return None
    if not getattr(predictor, "scores_sum_to_one", True):
        raise ValueError(
            f"TEST.LT_CALIBRATION {name!r} renormalises C+1 scores that sum to 1, but MODEL.LT.BOX_CLASSIFIER "
            f"{cfg.MODEL.LT.BOX_CLASSIFIER!r} with this config scores classes independently (sigmoid). Fix: set "
            "TEST.LT_CALIBRATION none, or use a softmax box classifier."
        )
    return NorCal(calibration_counts(cfg), cfg.TEST.LT_CALIBRATION_GAMMA)


def calibration_counts(cfg) -> torch.Tensor:
    """The training counts n_c NorCal divides by: TEST.LT_CALIBRATION_COUNTS of DATASETS.TRAIN, a class absent from
    training counted once (its score is then divided by 1).

    Args:
        cfg: the model's config.

    Returns:
        Tensor[C] of counts >= 1.
    """
    from .class_counts import read_class_counts

    source = cfg.TEST.LT_CALIBRATION_COUNTS
    if source not in ("instance_count", "image_count"):
        raise ValueError(f"TEST.LT_CALIBRATION_COUNTS must be 'instance_count' or 'image_count'; got {source!r}.")
    node = cfg.clone()
    node.defrost()
    node.MODEL.LT.CLASS_COUNT_SOURCE = source
    return torch.as_tensor(read_class_counts(node)).clamp_min(1.0)


def calibrated(predictor: nn.Module, probs: torch.Tensor) -> torch.Tensor:
    """`probs` through the predictor's `score_calibration` (set by build_box_predictor), if any.

    Args:
        predictor: the box predictor.
        probs: (R, C+1) class probabilities, background last.

    Returns:
        The calibrated probabilities, or `probs` itself when the predictor has no calibration.
    """
    calibration = getattr(predictor, "score_calibration", None)
    return probs if calibration is None else calibration(probs)


def per_image_probabilities(predictor: nn.Module, probs: torch.Tensor, proposals) -> tuple:
    """`predict_probs`'s return value: the calibrated (R, C+1) `probs` split into one tensor per image."""
    return calibrated(predictor, probs).split([len(p) for p in proposals], dim=0)
