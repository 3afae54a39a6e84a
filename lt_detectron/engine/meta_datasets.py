"""The held-out dev set of meta-weighting in detection (docs/methods.md#meta-weights-in-detection):
`prepare_meta_datasets` registers the two parts of DATASETS.TRAIN and points the config at them."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from lt_detectron.meta import build_dev_split

__all__ = ["prepare_meta_datasets"]

logger = logging.getLogger(__name__)

_TRAIN_SUFFIX, _DEV_SUFFIX = "__meta_train", "__meta_dev"
_SPLIT_KEYS: Dict[str, tuple] = {}  # registered split name -> what it was made from


def _image_class_sets(dicts: Sequence[Dict[str, Any]]) -> List[List[int]]:
    return [sorted({int(a["category_id"]) for a in d.get("annotations", ()) if not a.get("iscrowd", 0)}) for d in dicts]


def prepare_meta_datasets(cfg: CfgNode) -> CfgNode:
    """Hold out the dev set D from DATASETS.TRAIN (at most DEV_PER_CLASS images per class; see
    docs/methods.md#meta-weights-in-detection).

    Registers `<names>__meta_train` and `<names>__meta_dev` (lazily split, metadata copied from the first
    training dataset), so any train loader skips the held-out images.

    Args:
        cfg: a config with MODEL.LT keys.

    Returns:
        A clone of `cfg` with DATASETS.TRAIN and MODEL.LT.META.DEV_DATASETS pointing at the two parts; `cfg` itself
        when meta weighting is off or DEV_DATASETS is already set (a user-given D, or an already prepared cfg).
    """
    meta = cfg.MODEL.LT.META
    if not meta.ENABLED or len(meta.DEV_DATASETS):
        return cfg
    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("MODEL.LT.META.ENABLED needs DATASETS.TRAIN to hold out the dev set from; set DATASETS.TRAIN")
    base = "+".join(names)
    train_name, dev_name = base + _TRAIN_SUFFIX, base + _DEV_SUFFIX
    k, seed, num_classes = int(meta.DEV_PER_CLASS), int(meta.DEV_SEED), int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    # The split (and its class statistics) belong to these source registrations and split settings: a source
    # registered anew (e.g. lt_shapes under another root) or other settings give a new split.
    key = (tuple(DatasetCatalog[n] for n in names if n in DatasetCatalog.list()), k, seed, num_classes)
    if train_name not in DatasetCatalog.list() or _SPLIT_KEYS.get(train_name) != key:
        for new in (train_name, dev_name):
            if new in DatasetCatalog.list():
                DatasetCatalog.remove(new)
            if new in MetadataCatalog.list():
                MetadataCatalog.remove(new)
        _SPLIT_KEYS[train_name] = key
        cache: Dict[str, Any] = {}

        def split() -> Dict[str, Any]:
            if not cache:
                from detectron2.data import get_detection_dataset_dicts

                dicts = get_detection_dataset_dicts(list(names), filter_empty=False)
                result = build_dev_split(_image_class_sets(dicts), k, num_classes=num_classes, seed=seed, log=False)
                level = logging.WARNING if result.report.short_classes else logging.INFO
                logger.log(level, f"meta-weighting dev set held out of {list(names)}: {result.report.summary()}")
                cache.update(dicts=dicts, split=result)
            return cache

        DatasetCatalog.register(train_name, lambda: [split()["dicts"][i] for i in split()["split"].train_indices])
        DatasetCatalog.register(dev_name, lambda: [split()["dicts"][i] for i in split()["split"].dev_indices])
        source_meta = MetadataCatalog.get(names[0])
        # Not the source's class statistics: the held-out split has its own counts.
        skip = {"name", "class_stats", "cat_info_file"}
        source = {k_: v for k_, v in source_meta.as_dict().items() if k_ not in skip}
        if "class_image_count" not in source and hasattr(source_meta, "class_image_count"):  # lazily computed
            source["class_image_count"] = source_meta.class_image_count
        for new in (train_name, dev_name):
            MetadataCatalog.get(new).set(**source)
    out = cfg.clone()
    out.defrost()
    out.DATASETS.TRAIN = (train_name,)
    out.MODEL.LT.META.DEV_DATASETS = (dev_name,)
    if cfg.is_frozen():
        out.freeze()
    return out
