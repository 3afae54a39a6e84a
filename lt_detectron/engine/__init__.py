"""Detectron2 training/evaluation for lt-detectron: `LTTrainer` and config set-up."""
from .setup import build_cfg, check_cfg_datasets, register_lt_components, setup_cfg
from .trainer import AtomicDetectionCheckpointer, LTTrainer, build_lt_evaluator

__all__ = [
    "AtomicDetectionCheckpointer",
    "LTTrainer",
    "build_cfg",
    "check_cfg_datasets",
    "build_lt_evaluator",
    "register_lt_components",
    "setup_cfg",
]
