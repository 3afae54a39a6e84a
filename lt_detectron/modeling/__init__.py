"""Detectron2 parts of lt-detectron. Importing this package registers them (like detectron2.modeling does):

- `LTROIHeads` in ROI_HEADS_REGISTRY (MODEL.ROI_HEADS.NAME: "LTROIHeads"), its box predictor by
  MODEL.LT.BOX_CLASSIFIER from BOX_PREDICTOR_REGISTRY (a user project registers its own with a decorator);
- the narrow ResNet-FPN backbone of the CPU demo (`backbone.py`) in BACKBONE_REGISTRY.
"""

from . import backbone  # noqa: F401  (registers build_narrow_resnet_fpn_backbone)
from .box_predictors import (
    BOX_PREDICTOR_REGISTRY,
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
from .calibration import NorCal
from .checkpoint import StockLoadReport, load_stock_checkpoint
from .comparators import EQLv2BoxPredictor, SeesawBoxPredictor
from .lda_predictor import LDABoxPredictor, LDAScores
from .roi_heads import LTROIHeads, build_box_predictor

__all__ = [
    "BOX_PREDICTOR_REGISTRY",
    "BalancedSoftmaxBoxPredictor",
    "CBBoxPredictor",
    "CBFocalBoxPredictor",
    "EQLv2BoxPredictor",
    "NorCal",
    "SeesawBoxPredictor",
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
