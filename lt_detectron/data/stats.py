"""Per-class training statistics (n_c) and LVIS frequency groups, computed once per dataset and kept in its metadata.

Every reader (the long-tail box predictors, the LDA predictor, the meta-weighting hook and its eps plot, Detectron2's
federated loss through `class_image_count`) goes through `dataset_class_stats(name)`, which returns, in this order:
1. the statistics already in `MetadataCatalog.get(name).class_stats` (computed earlier in this process, or attached
   from the file the launcher wrote before `launch`, see `load_class_stats_file`);
2. a category-info file named by the metadata field `cat_info_file` (as CenterNet2 and Detic read `CAT_FREQ_PATH`):
   a small json list of categories with `id` (1..C), `image_count` and `instance_count`, written for any LVIS-format
   json by ``python -m lt_detectron.data.stats JSON --out FILE``;
3. a count over the dataset dicts (`DatasetCatalog.get(name)`, one load).
and stores the result in the metadata, so later readers never load the dataset again.

Counts come from the annotations themselves, never from the categories' stored `image_count` (a json whose stored
counts are stale cannot skew the class weights); a category-info file is trusted as given.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

__all__ = [
    "sampled_instance_counts",
    "repeat_factor_summary",
    "class_counts",
    "dataset_class_stats",
    "attach_class_stats",
    "class_stats_from_records",
    "class_stats_from_lvis_dict",
    "read_cat_info",
    "write_cat_info",
    "write_class_stats_file",
    "load_class_stats_file",
    "frequency_groups",
    "lvis_json_class_stats",
    "CLASS_STATS_FIELD",
    "CAT_INFO_FIELD",
    "RARE_MAX_IMAGES",
    "COMMON_MAX_IMAGES",
]

logger = logging.getLogger(__name__)

# LVIS groups by number of training images (Gupta et al., CVPR 2019, arXiv:1908.03195): rare 1..10, common
# 11..100, frequent > 100.
RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100
_SOURCES = ("instance_count", "image_count")
CLASS_STATS_FIELD = "class_stats"  # metadata: {"image_count": [C], "instance_count": [C]} by contiguous id
CAT_INFO_FIELD = "cat_info_file"  # metadata: path of a category-info json (optional)


def frequency_groups(image_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """'r' / 'c' / 'f' per class from its number of TRAINING images, exactly as LVIS assigns `frequency`.

    A class with 0 training images is put in 'r' (the tail); LVIS itself has no such class.
    """
    counts = np.asarray(image_counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"image_counts must be a 1-D array of non-negative counts, got shape {counts.shape}")
    return np.where(counts <= RARE_MAX_IMAGES, "r", np.where(counts <= COMMON_MAX_IMAGES, "c", "f"))


def _annotation_arrays(records: Sequence[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """(image index, category_id) of every annotation of Detectron2 dicts, in record order: the one Python-level pass
    over the annotations (1.27 M for LVIS v1 train); everything after it is NumPy."""
    per_image = [[a["category_id"] for a in r.get("annotations", ())] for r in records]
    lengths = np.fromiter(map(len, per_image), dtype=np.int64, count=len(per_image))
    cats = np.fromiter(itertools.chain.from_iterable(per_image), dtype=np.int64, count=int(lengths.sum()))
    return np.repeat(np.arange(len(per_image), dtype=np.int64), lengths), cats


def _per_class_counts(image: np.ndarray, cats: np.ndarray, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """(images containing each class, instances of each class) from `_annotation_arrays`."""
    pairs = np.unique(image * num_classes + cats)  # distinct (image, class) pairs
    images = np.bincount(pairs % num_classes, minlength=num_classes).astype(np.int64)
    return images, np.bincount(cats, minlength=num_classes).astype(np.int64)


def class_stats_from_records(records: Iterable[dict], num_classes: int, where: str) -> Dict[str, np.ndarray]:
    """Images containing each class and instances of each class, in one pass over Detectron2 dicts (contiguous
    0-based `category_id`s); `where` names the data in errors."""
    records = records if isinstance(records, Sequence) else list(records)
    image, cats = _annotation_arrays(records)
    bad = np.flatnonzero((cats < 0) | (cats >= num_classes))
    if bad.size:
        record = records[int(image[bad[0]])]
        raise ValueError(
            f"{where}: image {record.get('file_name', record.get('image_id'))} has category_id {int(cats[bad[0]])}, "
            f"outside the {num_classes} thing_classes; the dataset and its metadata disagree"
        )
    images, instances = _per_class_counts(image, cats, num_classes)
    return {"image_count": images, "instance_count": instances}


def class_stats_from_lvis_dict(data: Mapping, where: str) -> Dict[str, np.ndarray]:
    """The same statistics from an already-loaded LVIS-format dict (category ids 1..C, contiguous id = id - 1)."""
    ids = sorted(int(c["id"]) for c in data["categories"])
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"{where}: category ids must be 1..{len(ids)} to map to contiguous ids")
    num_classes = len(ids)
    cat = np.fromiter((a["category_id"] for a in data["annotations"]), dtype=np.int64, count=len(data["annotations"]))
    img = np.fromiter((a["image_id"] for a in data["annotations"]), dtype=np.int64, count=len(data["annotations"]))
    if cat.size and (cat.min() < 1 or cat.max() > num_classes):
        raise ValueError(f"{where}: an annotation has a category_id outside 1..{num_classes}")
    instances = np.bincount(cat - 1, minlength=num_classes)
    pairs = np.unique(img * (num_classes + 1) + cat)  # distinct (image, class) pairs
    images = np.bincount(pairs % (num_classes + 1) - 1, minlength=num_classes)
    return {"image_count": images.astype(np.int64), "instance_count": instances.astype(np.int64)}


def _as_arrays(stats: Mapping) -> Dict[str, np.ndarray]:
    return {key: np.asarray(stats[key], dtype=np.int64) for key in _SOURCES}


def read_cat_info(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """A category-info json: a list (or {"categories": [...]}) of {"id", "image_count", "instance_count"}, ids 1..C."""
    with open(path) as f:
        data = json.load(f)
    cats = data["categories"] if isinstance(data, dict) and "categories" in data else data
    if not isinstance(cats, list) or not cats:
        raise ValueError(f"{path}: expected a non-empty list of categories with id, image_count, instance_count")
    cats = sorted(cats, key=lambda c: c.get("id", -1))
    if [c.get("id") for c in cats] != list(range(1, len(cats) + 1)):
        raise ValueError(f"{path}: category ids must be 1..{len(cats)}; renumber them as the dataset json does")
    for key in _SOURCES:
        missing = [c["id"] for c in cats if not isinstance(c.get(key), int)]
        if missing:
            raise ValueError(
                f"{path}: categories {missing[:10]} have no integer {key!r}; write the file with "
                "`python -m lt_detectron.data.stats JSON --out FILE`"
            )
    return {key: np.array([c[key] for c in cats], dtype=np.int64) for key in _SOURCES}


def write_cat_info(json_path: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Write the category-info file of an LVIS-format json: id, name, image_count, instance_count, frequency."""
    from lt_detectron.utils import write_json_atomic

    stats = lvis_json_class_stats(json_path)
    cats = [
        {"id": i + 1, "name": name, "image_count": int(n_img), "instance_count": int(n_inst), "frequency": str(freq)}
        for i, (name, n_img, n_inst, freq) in enumerate(
            zip(stats["names"], stats["image_count"], stats["instance_count"], stats["frequency"])
        )
    ]
    return write_json_atomic(cats, os.fspath(out_path), indent=None)


def attach_class_stats(dataset_name: str, stats: Mapping) -> Dict[str, np.ndarray]:
    """Keep `stats` in the dataset's metadata (and `class_image_count`, the form Detectron2's federated loss reads,
    when the dataset has none); returns them as arrays."""
    from detectron2.data import MetadataCatalog

    arrays = _as_arrays(stats)
    meta = MetadataCatalog.get(dataset_name)
    fields = meta.as_dict()
    names = fields.get("thing_classes")
    if names is not None and len(names) != arrays["image_count"].size:
        raise ValueError(
            f"dataset {dataset_name!r}: class statistics for {arrays['image_count'].size} classes but "
            f"{len(names)} thing_classes; the category-info file or the dataset does not match its metadata"
        )
    stored = {key: arrays[key].tolist() for key in _SOURCES}
    if CLASS_STATS_FIELD in fields:  # Metadata fields are write-once; replace explicitly
        delattr(meta, CLASS_STATS_FIELD)
    setattr(meta, CLASS_STATS_FIELD, stored)
    if "class_image_count" not in fields and not getattr(type(meta), "derives_class_image_count", False):
        meta.class_image_count = [{"id": i + 1, "image_count": n} for i, n in enumerate(stored["image_count"])]
    return arrays


def dataset_class_stats(dataset_name: str) -> Dict[str, np.ndarray]:
    """{"image_count": [C], "instance_count": [C]} of a registered dataset, computed at most once per process
    (see the module docstring for where they come from)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    fields = MetadataCatalog.get(dataset_name).as_dict()  # as_dict: no lazily computed field is triggered
    if CLASS_STATS_FIELD in fields:
        return _as_arrays(fields[CLASS_STATS_FIELD])
    if fields.get(CAT_INFO_FIELD):
        logger.info("class statistics of %s from %s", dataset_name, fields[CAT_INFO_FIELD])
        return attach_class_stats(dataset_name, read_cat_info(fields[CAT_INFO_FIELD]))
    records = DatasetCatalog.get(dataset_name)  # may fill thing_classes (Detectron2's loaders do)
    names = MetadataCatalog.get(dataset_name).as_dict().get("thing_classes")
    if names is None:
        raise ValueError(f"dataset {dataset_name!r} has no thing_classes metadata; cannot tell how many classes it has")
    logger.info("class statistics of %s counted over its %d images", dataset_name, len(records))
    stats = class_stats_from_records(records, len(names), f"dataset {dataset_name!r}")
    return attach_class_stats(dataset_name, stats)


def class_counts(dataset_names: str | Sequence[str], source: str = "instance_count") -> np.ndarray:
    """n_c per contiguous class id, summed over the registered datasets (e.g. cfg.DATASETS.TRAIN).

    source: "instance_count" (objects per class) or "image_count" (images containing the class). Reads
    `dataset_class_stats`, so each dataset is counted once per process whatever the number of readers.
    """
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
    if not names:
        raise ValueError("class_counts needs at least one dataset name (cfg.DATASETS.TRAIN is empty?)")
    total = None
    for name in names:
        counts = dataset_class_stats(name)[source]
        if total is not None and counts.shape != total.shape:
            raise ValueError(
                f"datasets {names} have different numbers of thing_classes; they cannot share one classifier"
            )
        total = counts if total is None else total + counts
    return total


def write_class_stats_file(path: str, dataset_names: Sequence[str]) -> str:
    """Write the statistics of `dataset_names` (computed if needed) to one json, for `load_class_stats_file` in other
    processes (the launcher writes it before `launch`; every worker reads it instead of counting again)."""
    from lt_detectron.utils import write_json_atomic

    data = {name: {key: value.tolist() for key, value in dataset_class_stats(name).items()} for name in dataset_names}
    return write_json_atomic(data, path, indent=None)


def load_class_stats_file(path: str) -> List[str]:
    """Attach every dataset's statistics from a `write_class_stats_file` json; returns the dataset names."""
    with open(path) as f:
        data = json.load(f)
    for name, stats in data.items():
        attach_class_stats(name, stats)
    return list(data)


def lvis_json_class_stats(json_path: str | os.PathLike) -> Dict[str, object]:
    """Class statistics straight from an LVIS-format json (category ids 1..C, as LVIS v1).

    Returns {"names": [C], "image_count": ndarray[C], "instance_count": ndarray[C], "frequency": ndarray[C] of r/c/f}
    computed from the annotations; for a TRAIN json, "frequency" is what LVIS stores in `categories[*].frequency`.
    """
    from .validation import validate_lvis_json

    with open(json_path) as f:
        data = json.load(f)
    validate_lvis_json(json_path, data=data)
    categories: List[dict] = sorted(data["categories"], key=lambda c: c["id"])
    stats = class_stats_from_lvis_dict(data, str(json_path))
    return {"names": [c["name"] for c in categories], **stats, "frequency": frequency_groups(stats["image_count"])}


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: write the category-info file of an LVIS-format json (the `cat_info_file` metadata field reads it)."""
    parser = argparse.ArgumentParser(
        prog="python -m lt_detectron.data.stats",
        description="Write a category-info json (id, name, image_count, instance_count, frequency) of an LVIS json.",
    )
    parser.add_argument("json_file", help="LVIS-format annotation json, e.g. datasets/lvis/lvis_v1_train.json")
    parser.add_argument("--out", required=True, help="output, e.g. datasets/lvis/lvis_v1_train_cat_info.json")
    args = parser.parse_args(argv)
    print(write_cat_info(args.json_file, args.out))


if __name__ == "__main__":
    main()


def sampled_instance_counts(
    dataset_names: str | Sequence[str], num_classes: int, repeat_threshold: float, sqrt: bool = True
) -> np.ndarray:
    """Expected instances of each class per pass over the data under repeat factor sampling (Gupta et al., CVPR 2019,
    arXiv:1908.03195): sum over images of the image's repeat factor times its instances of the class.

    The factors are Detectron2's own (`RepeatFactorTrainingSampler.repeat_factors_from_category_frequency`, what the
    training sampler uses), over the concatenated training sets as the loader builds them; threshold 0 gives the raw
    instance counts. Loads the datasets' records (one parse of the annotations).
    """
    from detectron2.data import DatasetCatalog
    from detectron2.data.samplers import RepeatFactorTrainingSampler

    names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
    records = [r for name in names for r in DatasetCatalog.get(name)]
    if repeat_threshold > 0:
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            records, repeat_threshold, sqrt=sqrt
        ).numpy()
    else:
        factors = np.ones(len(records))
    image, cats = _annotation_arrays(records)
    if cats.size and cats.min() < 0:
        raise ValueError(f"datasets {names}: an annotation has a negative category_id ({int(cats.min())})")
    keep = cats < num_classes
    # Instances of each (image, class), each weighted by its image's factor and summed per class in image order.
    pairs, per_pair = np.unique(image[keep] * num_classes + cats[keep], return_counts=True)
    weights = np.asarray(factors, dtype=np.float64)[pairs // num_classes] * per_pair
    return np.bincount(pairs % num_classes, weights=weights, minlength=num_classes)


def repeat_factor_summary(records: Sequence[dict], factors: Sequence[float], num_classes: int) -> Dict[str, object]:
    """What repeat factor sampling does to one pass over the data, from the per-image `factors` the sampler uses.

    Images are grouped by the LVIS frequency group ('r', 'c', 'f', from the training image counts) of their rarest
    class; images without annotations form group 'none' (factor 1). Returns the effective epoch length (sum of the
    factors) against the number of images, per group the number of images, their mean and largest factor, and the
    share of sampled images that hold a rare class against that share without repeats.
    """
    factors = np.asarray(factors, dtype=np.float64)
    if len(factors) != len(records):
        raise ValueError(f"repeat_factor_summary: {len(factors)} factors for {len(records)} images")
    image, cats = _annotation_arrays(records)
    # Not class_stats_from_records: that is the training statistics' one pass per dataset, whose calls
    # tests/test_data_class_stats.py counts; this summary needs only the image counts.
    image_counts, _ = _per_class_counts(image, cats, num_classes)
    groups = frequency_groups(image_counts)
    rank_of_class = np.select([groups == "r", groups == "c"], [0, 1], default=2)  # the rarest group ranks lowest
    rarest = np.full(len(records), 3, dtype=np.int64)  # 3: no annotation
    if cats.size:
        starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
        rarest[image[starts]] = np.minimum.reduceat(rank_of_class[cats], starts)
    image_group = np.array(["r", "c", "f", "none"])[rarest]
    summary: Dict[str, object] = {
        "images": len(records),
        "effective_epoch_images": float(factors.sum()),
        "groups": {},
    }
    for group in ("r", "c", "f", "none"):
        mask = image_group == group
        if mask.any():
            summary["groups"][group] = {
                "images": int(mask.sum()),
                "mean_factor": float(factors[mask].mean()),
                "max_factor": float(factors[mask].max()),
            }
    has_rare = rarest == 0
    summary["rare_image_share"] = float(has_rare.mean()) if len(records) else 0.0
    summary["rare_image_share_sampled"] = float(factors[has_rare].sum() / factors.sum()) if len(records) else 0.0
    return summary


def format_repeat_factor_summary(summary: Mapping[str, object], threshold: float, sqrt: bool) -> str:
    groups = "; ".join(
        f"{g}: {v['images']} images, factor mean {v['mean_factor']:.2f} max {v['max_factor']:.2f}"
        for g, v in summary["groups"].items()  # type: ignore[union-attr]
    )
    return (
        f"repeat factor sampling (threshold {threshold:g}, sqrt {sqrt}): an epoch draws "
        f"{summary['effective_epoch_images']:.0f} images for {summary['images']} "
        f"({summary['effective_epoch_images'] / max(summary['images'], 1):.2f}x); by the rarest class of an image: "
        f"{groups}; images with a rare class: {100 * summary['rare_image_share']:.1f} % of the data, "
        f"{100 * summary['rare_image_share_sampled']:.1f} % of the sampled images"
    )
