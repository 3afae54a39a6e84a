"""Datasets for lt-detectron: the synthetic long-tailed `lt_shapes` (LVIS v1 format), class statistics and
annotation validation. Importing this package registers `lt_shapes_train` / `lt_shapes_val` in Detectron2's
DatasetCatalog (generated on first use of their dicts or by `ensure_datasets`; see `registration.py`)."""

from __future__ import annotations

from .lt_shapes import generate_lt_shapes, plan_lt_shapes
from .lvis_compat import patch_lvis_numpy_aliases
from .registration import (
    LT_SHAPES_SPLITS,
    dataset_dicts_loaded_once,
    default_lt_shapes_root,
    ensure_datasets,
    ensure_lt_shapes,
    register_json_datasets,
    register_lt_shapes,
    release_loaded_dataset_dicts,
)
from .stats import (
    attach_class_stats,
    class_counts,
    dataset_class_stats,
    frequency_groups,
    load_class_stats_file,
    lvis_json_class_stats,
    write_class_stats_file,
)
from .validation import AnnotationError, check_datasets, check_lvis_available, is_builtin_lvis, validate_lvis_json

__all__ = [
    "AnnotationError",
    "LT_SHAPES_SPLITS",
    "attach_class_stats",
    "check_datasets",
    "check_lvis_available",
    "class_counts",
    "dataset_class_stats",
    "dataset_dicts_loaded_once",
    "default_lt_shapes_root",
    "ensure_datasets",
    "ensure_lt_shapes",
    "is_builtin_lvis",
    "load_class_stats_file",
    "write_class_stats_file",
    "frequency_groups",
    "generate_lt_shapes",
    "lvis_json_class_stats",
    "plan_lt_shapes",
    "register_json_datasets",
    "register_lt_shapes",
    "release_loaded_dataset_dicts",
    "validate_lvis_json",
]

patch_lvis_numpy_aliases()  # lvis 0.5.3 + NumPy >= 1.24; see lvis_compat.py
register_lt_shapes()
