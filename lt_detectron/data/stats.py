"""Per-class training statistics (n_c) and LVIS frequency groups, the same way for every LVIS-format dataset.

`class_counts` reads Detectron2 dataset dicts (any registered dataset: lt_shapes, lvis_v1_*, custom);
`lvis_json_class_stats` reads an LVIS json directly. Both count from the annotations themselves, never from the
categories' stored `image_count`, so a json whose stored counts are stale cannot skew the class weights.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Sequence

import numpy as np

__all__ = ["class_counts", "frequency_groups", "lvis_json_class_stats", "RARE_MAX_IMAGES", "COMMON_MAX_IMAGES"]

# LVIS groups by number of training images (Gupta et al., CVPR 2019, arXiv:1908.03195): rare 1..10, common
# 11..100, frequent > 100.
RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100
_SOURCES = ("instance_count", "image_count")


def frequency_groups(image_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """'r' / 'c' / 'f' per class from its number of TRAINING images, exactly as LVIS assigns `frequency`.

    A class with 0 training images is put in 'r' (the tail); LVIS itself has no such class.
    """
    counts = np.asarray(image_counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"image_counts must be a 1-D array of non-negative counts, got shape {counts.shape}")
    return np.where(counts <= RARE_MAX_IMAGES, "r", np.where(counts <= COMMON_MAX_IMAGES, "c", "f"))


def _counts_from_records(records: Iterable[dict], num_classes: int, source: str, where: str) -> np.ndarray:
    """Count contiguous 0-based `category_id`s of Detectron2 dicts: instances, or images containing the class."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in records:
        cats = [ann["category_id"] for ann in record.get("annotations", [])]
        for c in cats if source == "instance_count" else set(cats):
            if not 0 <= c < num_classes:
                raise ValueError(
                    f"{where}: image {record.get('file_name', record.get('image_id'))} has category_id {c}, "
                    f"outside the {num_classes} thing_classes; the dataset and its metadata disagree"
                )
            counts[c] += 1
    return counts


def class_counts(dataset_names: str | Sequence[str], source: str = "instance_count") -> np.ndarray:
    """n_c per contiguous class id, summed over the registered datasets (e.g. cfg.DATASETS.TRAIN).

    source: "instance_count" (objects per class) or "image_count" (images containing the class).
    The number of classes comes from the datasets' `thing_classes` metadata, which must agree.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
    if not names:
        raise ValueError("class_counts needs at least one dataset name (cfg.DATASETS.TRAIN is empty?)")
    total = None
    num_classes = None
    for name in names:
        records = DatasetCatalog.get(name)  # may fill thing_classes (Detectron2's loaders do)
        meta = MetadataCatalog.get(name).as_dict()
        if "thing_classes" not in meta:
            raise ValueError(f"dataset {name!r} has no thing_classes metadata; cannot tell how many classes it has")
        if num_classes is not None and len(meta["thing_classes"]) != num_classes:
            raise ValueError(
                f"datasets {names} have different numbers of thing_classes; they cannot share one classifier"
            )
        num_classes = len(meta["thing_classes"])
        counts = _counts_from_records(records, num_classes, source, f"dataset {name!r}")
        total = counts if total is None else total + counts
    return total


def lvis_json_class_stats(json_path: str | os.PathLike) -> Dict[str, object]:
    """Class statistics straight from an LVIS-format json (category ids 1..C, as LVIS v1).

    Returns {"names": [C], "image_count": ndarray[C], "instance_count": ndarray[C], "frequency": ndarray[C] of r/c/f}
    computed from the annotations; for a TRAIN json, "frequency" is what LVIS stores in `categories[*].frequency`.
    """
    from .validation import validate_lvis_json

    validate_lvis_json(json_path)
    with open(json_path) as f:
        data = json.load(f)
    categories: List[dict] = sorted(data["categories"], key=lambda c: c["id"])
    num_classes = len(categories)
    per_image: Dict[int, list] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append({"category_id": ann["category_id"] - 1})
    records = [{"image_id": k, "annotations": v} for k, v in per_image.items()]
    image_count = _counts_from_records(records, num_classes, "image_count", str(json_path))
    return {
        "names": [c["name"] for c in categories],
        "image_count": image_count,
        "instance_count": _counts_from_records(records, num_classes, "instance_count", str(json_path)),
        "frequency": frequency_groups(image_count),
    }
