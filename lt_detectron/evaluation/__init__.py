"""LVIS evaluation: lvis-api's numbers computed with numpy, sharded by class over processes, with
Fixed AP, per-class reports and Detectron2 integration."""

from .fast_lvis import FIXED_AP_DEFAULT_K, LVISEvalResult, default_workers, evaluate_lvis, summarize_lvis
from .inputs import LVISInputError, load_detections, load_ground_truth

__all__ = [
    "FIXED_AP_DEFAULT_K",
    "LVISEvalResult",
    "LVISInputError",
    "default_workers",
    "evaluate_lvis",
    "load_detections",
    "load_ground_truth",
    "summarize_lvis",
]
