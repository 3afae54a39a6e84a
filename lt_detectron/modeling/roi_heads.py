"""`LTROIHeads`: Detectron2's StandardROIHeads whose box predictor is chosen by MODEL.LT.BOX_CLASSIFIER.

Only the box predictor changes; the pooler, box head, mask head and proposal sampling are Detectron2's.
"""
from __future__ import annotations

from typing import Dict, Type

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from .box_predictors import (
    BalancedSoftmaxBoxPredictor,
    CBBoxPredictor,
    CBFocalBoxPredictor,
    FocalBoxPredictor,
    LADEBoxPredictor,
    LDAMBoxPredictor,
    PCSoftmaxBoxPredictor,
    StockBoxPredictor,
)
from .lda_predictor import LDABoxPredictor

__all__ = ["LTROIHeads", "BOX_PREDICTORS", "build_box_predictor"]

# MODEL.LT.BOX_CLASSIFIER -> predictor class (the config reference is lt_detectron/config.py).
BOX_PREDICTORS: Dict[str, Type[FastRCNNOutputLayers]] = {
    "softmax": StockBoxPredictor,
    "cb": CBBoxPredictor,
    "focal": FocalBoxPredictor,
    "cb_focal": CBFocalBoxPredictor,
    "ldam": LDAMBoxPredictor,
    "pc_softmax": PCSoftmaxBoxPredictor,
    "balanced_softmax": BalancedSoftmaxBoxPredictor,
    "lade": LADEBoxPredictor,
    "lda": LDABoxPredictor,
}


def build_box_predictor(cfg, input_shape: ShapeSpec) -> FastRCNNOutputLayers:
    """The box predictor named by `cfg.MODEL.LT.BOX_CLASSIFIER`, built from `cfg`."""
    name = cfg.MODEL.LT.BOX_CLASSIFIER
    if name not in BOX_PREDICTORS:
        raise ValueError(
            f"MODEL.LT.BOX_CLASSIFIER = {name!r} is not a known box classifier; valid names: "
            f"{', '.join(sorted(BOX_PREDICTORS))}."
        )
    return BOX_PREDICTORS[name](cfg, input_shape)


@ROI_HEADS_REGISTRY.register()
class LTROIHeads(StandardROIHeads):
    """StandardROIHeads with a long-tail box classifier (MODEL.ROI_HEADS.NAME: "LTROIHeads")."""

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
