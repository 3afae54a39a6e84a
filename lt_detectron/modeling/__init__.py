"""Detectron2 parts of lt-detectron. Importing this package registers them (like detectron2.modeling does):

- `LTROIHeads` in ROI_HEADS_REGISTRY (MODEL.ROI_HEADS.NAME: "LTROIHeads"), box predictor by MODEL.LT.BOX_CLASSIFIER;
- the narrow ResNet-FPN backbone of the CPU demo (`backbone.py`) in BACKBONE_REGISTRY.
"""

from . import backbone  # noqa: F401  (registers build_narrow_resnet_fpn_backbone)
from .box_predictors import (
    BalancedSoftmaxBoxPredictor,
    CBBoxPredictor,
    CBFocalBoxPredictor,
    FocalBoxPredictor,
    LADEBoxPredictor,
    LDAMBoxPredictor,
    LTBoxPredictor,
    PCSoftmaxBoxPredictor,
    StockBoxPredictor,
)
from .checkpoint import StockLoadReport, load_stock_checkpoint
from .lda_predictor import LDABoxPredictor, LDAScores
from .roi_heads import BOX_PREDICTORS, LTROIHeads, build_box_predictor

__all__ = [
    "BOX_PREDICTORS",
    "BalancedSoftmaxBoxPredictor",
    "CBBoxPredictor",
    "CBFocalBoxPredictor",
    "FocalBoxPredictor",
    "LADEBoxPredictor",
    "LDABoxPredictor",
    "LDAMBoxPredictor",
    "LDAScores",
    "LTBoxPredictor",
    "LTROIHeads",
    "PCSoftmaxBoxPredictor",
    "StockBoxPredictor",
    "StockLoadReport",
    "build_box_predictor",
    "load_stock_checkpoint",
]
