"""`LTROIHeads`: Detectron2's StandardROIHeads whose box predictor is chosen by MODEL.LT.BOX_CLASSIFIER.

Only the box predictor changes; the pooler, box head, mask head and proposal sampling are Detectron2's. In training
an optional `roi_reweighter` (e.g. meta-weighting's `lt_detectron.engine.meta_step.RoIMetaStep`) gives per-RoI
weights, which the box predictor applies in its classification loss (`losses(..., roi_weights=)`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from torch import nn

from lt_detectron.layers import CosineLinear

from . import comparators, lda_predictor  # noqa: F401  (register "seesaw", "eqlv2", "lda")
from .box_predictors import BOX_PREDICTOR_REGISTRY, put_scalars
from .calibration import build_score_calibration

__all__ = ["LTROIHeads", "RoIReweighter", "BOX_PREDICTOR_REGISTRY", "build_box_predictor"]

# (box predictor, box-head features [R, d], the predictor's outputs, sampled RoIs) -> weights [R] (detached), or
# None for the unweighted loss.
RoIReweighter = Callable[[FastRCNNOutputLayers, torch.Tensor, Any, List[Instances]], Optional[torch.Tensor]]


def build_box_predictor(cfg, input_shape: ShapeSpec) -> FastRCNNOutputLayers:
    """The box predictor registered as `cfg.MODEL.LT.BOX_CLASSIFIER` in BOX_PREDICTOR_REGISTRY, built from `cfg`.

    Args:
        cfg: the config (with the MODEL.LT keys).
        input_shape: the box head's output shape.

    Returns:
        The predictor, with a cosine classifier when MODEL.LT.COSINE.ENABLED and its `score_calibration` set from
        TEST.LT_CALIBRATION (None: no calibration).
    """
    name = cfg.MODEL.LT.BOX_CLASSIFIER
    if name not in BOX_PREDICTOR_REGISTRY:
        raise ValueError(
            f"MODEL.LT.BOX_CLASSIFIER = {name!r} is not a known box classifier; valid names: "
            f"{', '.join(sorted(BOX_PREDICTOR_REGISTRY.names()))}. A new one is added with "
            "@lt_detectron.modeling.BOX_PREDICTOR_REGISTRY.register(name)."
        )
    predictor = BOX_PREDICTOR_REGISTRY.get(name)(cfg, input_shape)
    if cfg.MODEL.LT.COSINE.ENABLED:
        use_cosine_classifier(predictor, cfg.MODEL.LT.COSINE.SCALE, name)
    predictor.score_calibration = build_score_calibration(cfg, predictor)
    return predictor


# Heads with their own classifier layout or normalisation: the generic cosine option does not apply.
_OWN_CLASSIFIER = {"lda": "three classifiers of its own", "ldam": "MODEL.LT.LDAM.COSINE_CLASSIFIER"}


def use_cosine_classifier(predictor: FastRCNNOutputLayers, scale: float, name: str) -> None:
    """Replace the predictor's linear `cls_score` by a cosine classifier `scale * cos(w_c, x)` (MODEL.LT.COSINE).

    The weight keeps nn.Linear's layout, so a stock checkpoint's `cls_score.weight` loads (its bias is unused).
    """
    if name in _OWN_CLASSIFIER or not isinstance(getattr(predictor, "cls_score", None), nn.Linear):
        raise ValueError(
            f"MODEL.LT.COSINE.ENABLED applies to the heads with one linear cls_score (softmax, cb, focal, cb_focal, "
            f"pc_softmax, balanced_softmax, lade, seesaw, eqlv2); {name!r} has "
            f"{_OWN_CLASSIFIER.get(name, 'no linear cls_score')}."
        )
    if scale <= 0:
        raise ValueError(f"MODEL.LT.COSINE.SCALE must be > 0 (the temperature of the cosine logits); got {scale}.")
    linear = predictor.cls_score
    predictor.cls_score = CosineLinear(linear.in_features, linear.out_features, scale=scale)


def log_dead_box_features(box_head: nn.Module, inputs, features: torch.Tensor) -> None:
    """Forward hook: in training, `lt/box_head_dead_fraction` = share of box-head output units that are <= 0 on every
    RoI of the batch (dead ReLUs). 1.0 means the head has collapsed: every RoI gets the same scores."""
    if not box_head.training or features.dim() != 2 or features.shape[0] == 0:
        return
    dead = float((features.detach() <= 0).all(dim=0).float().mean())
    put_scalars(**{"lt/box_head_dead_fraction": dead})
    if dead == 1.0 and not getattr(box_head, "_lt_collapse_reported", False):
        box_head._lt_collapse_reported = True
        logging.getLogger(__name__).warning(
            "Every box-head output unit is zero on all RoIs of this batch: the box head has collapsed and all RoIs "
            "get the same class scores. Lower the learning rate or the loss weights (for LDA: "
            "MODEL.LT.LDA.BALANCED_FEATURE_GRAD False, the default; see docs/methods.md#lda-box-head)."
        )


@ROI_HEADS_REGISTRY.register()
class LTROIHeads(StandardROIHeads):
    """StandardROIHeads with a long-tail box classifier (MODEL.ROI_HEADS.NAME: "LTROIHeads").

    `roi_reweighter` (default None: unweighted) is asked in each training forward for the weights of the sampled RoIs.

    Args:
        args, kwargs: StandardROIHeads' arguments (Detectron2 builds them from the config; the box predictor comes
            from `build_box_predictor`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.box_head.register_forward_hook(log_dead_box_features)
        self.roi_reweighter: Optional[RoIReweighter] = None

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        if not self.training:
            return super()._forward_box(features, proposals)
        # Detectron2's training branch, with the re-weighter's per-RoI weights passed to the predictor's loss.
        pooled = self.box_pooler([features[f] for f in self.box_in_features], [x.proposal_boxes for x in proposals])
        box_features = self.box_head(pooled)
        predictions = self.box_predictor(box_features)
        weights = None
        if self.roi_reweighter is not None:
            weights = self.roi_reweighter(self.box_predictor, box_features, predictions, proposals)
        # Only when given: a user's predictor without the argument keeps working unweighted.
        kwargs = {} if weights is None else {"roi_weights": weights}
        losses = self.box_predictor.losses(predictions, proposals, **kwargs)
        if self.train_on_pred_boxes:  # proposals change in place: after the losses
            with torch.no_grad():
                pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals)
            for proposals_per_image, boxes in zip(proposals, pred_boxes):
                proposals_per_image.proposal_boxes = Boxes(boxes)
        return losses

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        if "LT" not in cfg.MODEL:
            raise KeyError(
                "MODEL.ROI_HEADS.NAME is 'LTROIHeads' but the config has no MODEL.LT keys; call "
                "lt_detectron.add_lt_config(cfg) before merging the config file."
            )
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = build_box_predictor(cfg, ret["box_head"].output_shape)
        return ret
