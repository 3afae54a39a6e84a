"""Detectron2 training/evaluation for lt-detectron: `LTTrainer` and config set-up."""

from .meta_datasets import prepare_meta_datasets
from .meta_hook import MetaWeightingHook, MetaWeightingTrainerMixin
from .setup import build_cfg, check_cfg_datasets, prepare_datasets, prepare_launch, register_lt_components, setup_cfg
from .trainer import AtomicDetectionCheckpointer, LTTrainer, build_lt_evaluator

__all__ = [
    "AtomicDetectionCheckpointer",
    "LTTrainer",
    "MetaWeightingHook",
    "MetaWeightingTrainerMixin",
    "prepare_meta_datasets",
    "build_cfg",
    "check_cfg_datasets",
    "prepare_datasets",
    "prepare_launch",
    "build_lt_evaluator",
    "register_lt_components",
    "setup_cfg",
]
