"""Helpers shared by the box predictors: EventStorage access, gathered ground truth, box regression, option checks."""

from __future__ import annotations

from typing import List, Optional

import torch
from detectron2.layers import cat
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

__all__ = [
    "event_storage_active",
    "put_scalars",
    "current_iteration",
    "gt_classes_of",
    "regression_loss",
    "reject_stock_loss_options",
    "weighted_mean",
    "reject_roi_weights",
]


def event_storage_active() -> bool:
    """Whether a Detectron2 EventStorage is open (inside a trainer), not e.g. at inference or in a unit test."""
    try:
        get_event_storage()
    except AssertionError:
        return False
    return True


def put_scalars(**values) -> None:
    """Write scalars (numbers or 0-dim tensors) to Detectron2's EventStorage when one is active (training); a no-op
    otherwise. The tensors are read back together: one device-to-host copy per call, not one per value."""
    if not event_storage_active():
        return
    tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
    if tensors:
        stacked = torch.stack([v.detach().reshape(()).to(torch.float64) for v in tensors.values()])
        values = {**values, **dict(zip(tensors, stacked.tolist()))}
    get_event_storage().put_scalars(**{k: float(v) for k, v in values.items()})


def current_iteration() -> int:
    """The trainer's iteration (restored on resume), or 0 outside a trainer."""
    return get_event_storage().iter if event_storage_active() else 0


def gt_classes_of(proposals: List[Instances], device: torch.device) -> torch.Tensor:
    if not len(proposals):
        return torch.empty(0, dtype=torch.long, device=device)
    return cat([p.gt_classes for p in proposals], dim=0)


def regression_loss(predictor: FastRCNNOutputLayers, proposal_deltas, proposals, gt_classes) -> torch.Tensor:
    """Detectron2's box regression loss with the inputs gathered as FastRCNNOutputLayers.losses does."""
    if len(proposals):
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        # All-background images carry no gt_boxes; their placeholder boxes are never used by box_reg_loss.
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
    else:
        proposal_boxes = gt_boxes = torch.empty((0, 4), device=proposal_deltas.device)
    loss = predictor.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes)
    return loss * predictor.loss_weight.get("loss_box_reg", 1.0)


def reject_stock_loss_options(cfg, name: str) -> None:
    if cfg.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE or cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS:
        raise ValueError(
            f"MODEL.LT.BOX_CLASSIFIER = {name!r} defines its own classification loss, so "
            "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE / USE_FED_LOSS must be False; use BOX_CLASSIFIER 'softmax' "
            "for Detectron2's sigmoid / federated loss."
        )


def weighted_mean(per_roi: torch.Tensor, roi_weights: torch.Tensor) -> torch.Tensor:
    """The classification loss under per-RoI weights: `mean_i w_i L_i` over the sampled RoIs.

    Args:
        per_roi: Tensor[R] of unreduced per-RoI losses L_i.
        roi_weights: Tensor[R] of weights w_i (LTROIHeads' `roi_weights`; no gradient flows into them).

    Returns:
        The scalar weighted mean; 0 (in the graph) without RoIs.
    """
    if roi_weights.shape != per_roi.shape:
        raise ValueError(
            f"roi_weights has shape {tuple(roi_weights.shape)} but the box predictor scored {tuple(per_roi.shape)} "
            "RoIs; pass one weight per sampled RoI"
        )
    if per_roi.numel() == 0:
        return per_roi.sum() * 0.0
    return (roi_weights.detach().to(per_roi.dtype) * per_roi).mean()


def reject_roi_weights(predictor: FastRCNNOutputLayers, roi_weights: Optional[torch.Tensor], why: str) -> None:
    """For predictors whose classification loss is not a mean of per-RoI losses (`per_example` False): per-RoI
    weights have no defined meaning there, so they are an error rather than silently ignored.

    Args:
        predictor: the box predictor.
        roi_weights: what LTROIHeads passed; None is accepted.
        why: what makes the loss batch-level, for the message.
    """
    if roi_weights is not None:
        raise ValueError(
            f"{type(predictor).__name__} takes no roi_weights: its classification loss is not a mean of per-RoI "
            f"losses ({why}), so per-RoI weights (e.g. MODEL.LT.META) do not apply to it."
        )
