"""Per-class training counts n_c of the configured training sets, checked against the config.

The counts are read from the datasets' metadata (`lt_detectron.data.dataset_class_stats`: computed once per training
set, or read from a category-info file), so building a model does not load the dataset again.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from lt_detectron.utils.distributed import broadcast_from_main

__all__ = ["read_class_counts"]


def _class_labels(dataset_names: Sequence[str], num: int) -> list[str]:
    """'category id 7 (name)' per contiguous class: the id the annotation file uses (LVIS: contiguous + 1; COCO-format
    sets: Detectron2's thing_dataset_id_to_contiguous_id), so the user can find the class in the json."""
    from detectron2.data import MetadataCatalog

    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        names = meta.get("thing_classes", None)
        if names is not None and len(names) == num:
            to_contiguous = meta.get("thing_dataset_id_to_contiguous_id", None)
            ids = {c: d for d, c in to_contiguous.items()} if to_contiguous else {c: c + 1 for c in range(num)}
            return [f"category id {ids[c]} ({names[c]})" for c in range(num)]
    return [f"class {c} (contiguous id)" for c in range(num)]


def read_class_counts(cfg) -> np.ndarray:
    """Per-class training counts n_c of `cfg.DATASETS.TRAIN`, checked against the config.

    Raises ValueError when NUM_CLASSES disagrees with the datasets, or (ZERO_COUNT_POLICY "error")
    when a class never occurs in training; with "warn" those classes are named in a warning.
    """
    from lt_detectron.data import class_counts

    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError(
            "DATASETS.TRAIN is empty: the long-tail box classifiers need the training datasets to read "
            "the per-class counts n_c; set DATASETS.TRAIN, or use MODEL.LT.BOX_CLASSIFIER softmax."
        )
    source = cfg.MODEL.LT.CLASS_COUNT_SOURCE
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if source == "sampled_instance_count":
        from lt_detectron.data.stats import sampled_instance_counts

        threshold = (
            cfg.DATALOADER.REPEAT_THRESHOLD if cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler" else 0
        )
        sqrt = cfg.DATALOADER.get("REPEAT_SQRT", True)  # older Detectron2 configs lack the key: sqrt, as they did

        def read() -> np.ndarray:
            return sampled_instance_counts(names, num_classes, threshold, sqrt)
    else:

        def read() -> np.ndarray:
            return class_counts(names, source=source)

    # Every rank reads at once: the read is its training set's one load, which its data loader uses next
    # (dataset_dicts_loaded_once); rank 0 alone reading first would make the others wait one parse (1.5x stock's
    # start-up with 2 processes). All ranks then take rank 0's n_c (or its error), so the heads agree.
    try:
        local = (True, read())
    except Exception as err:  # rank 0's outcome decides below; the others' loaders meet their own errors
        local = (False, err)
    ok, value = broadcast_from_main(lambda: local)
    if not ok:
        raise value
    counts = np.asarray(value, dtype=np.float64)
    if counts.shape != (num_classes,):
        raise ValueError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but the training datasets {list(names)} have "
            f"{counts.shape[0]} categories; set MODEL.ROI_HEADS.NUM_CLASSES: {counts.shape[0]} in the config."
        )
    zero = np.flatnonzero(counts <= 0)
    if zero.size:
        labels = _class_labels(names, num_classes)
        listed = ", ".join(labels[i] for i in zero[:20])
        more = f" and {zero.size - 20} more" if zero.size > 20 else ""
        policy = cfg.MODEL.LT.ZERO_COUNT_POLICY
        msg = f"{zero.size} categories of {list(names)} never occur in training ({source} = 0): {listed}{more}."
        if policy == "error":
            raise ValueError(
                msg + " Their class weight 1/n_c is undefined. Remove them from the dataset, or set "
                "MODEL.LT.ZERO_COUNT_POLICY: warn to exclude them from the weighting."
            )
        if policy != "warn":
            raise ValueError(f"MODEL.LT.ZERO_COUNT_POLICY must be 'error' or 'warn', got {policy!r}.")
        warnings.warn(
            msg + " They get class weight 0 and are treated as seen once in priors and margins "
            "(MODEL.LT.ZERO_COUNT_POLICY: warn).",
            stacklevel=2,
        )
    return counts
