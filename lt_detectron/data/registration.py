"""Register `lt_shapes_train` / `lt_shapes_val` in Detectron2's catalogs, generated explicitly.

Like detectron2.data.datasets.builtin, importing `lt_detectron.data` registers them. Reading metadata never
generates anything (`MetadataCatalog.get("lt_shapes_train").json_file` is just a path); the data are generated on
first use of the dataset dicts (DatasetCatalog.get), by `ensure_datasets` (what tools/train_net.py runs before
`launch`), or by the CLI ``python -m lt_detectron.data.lt_shapes --out DIR``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Dict, Iterator, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.datasets.lvis import load_lvis_json

from .lt_shapes import TRAIN_JSON, VAL_JSON, category_names, generate_lt_shapes, is_complete
from .validation import validate_lvis_json

__all__ = [
    "register_lt_shapes",
    "default_lt_shapes_root",
    "ensure_lt_shapes",
    "ensure_datasets",
    "dataset_dicts_loaded_once",
    "release_loaded_dataset_dicts",
    "LT_SHAPES_SPLITS",
]

LT_SHAPES_SPLITS = {"lt_shapes_train": TRAIN_JSON, "lt_shapes_val": VAL_JSON}
_GENERATION_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


@contextlib.contextmanager
def dataset_dicts_loaded_once() -> Iterator[Dict[str, list]]:
    """Within the block, `DatasetCatalog.get(name)` loads each dataset once and hands every later caller that list.

    A trainer's start-up reads the training set for the class statistics (the model's predictors), the repeat
    factors and the loader: one parse of the annotation file serves them all, as stock Detectron2 parses it once for
    its loader. The lists are shared, so callers must not modify them (Detectron2's mapper copies each record).
    Nested use shares the outer cache; the lists are released when the outermost block ends.
    """
    if getattr(DatasetCatalog, "_lt_loaded_once", None) is not None:  # nested: the outer block owns the cache
        yield DatasetCatalog._lt_loaded_once
        return
    cache: Dict[str, list] = {}
    load = DatasetCatalog.get  # the catalog's own method (an instance attribute would shadow it below)

    def get_once(name: str) -> list:
        if name not in cache:
            cache[name] = load(name)
        return cache[name]

    DatasetCatalog._lt_loaded_once = cache
    DatasetCatalog.get = get_once
    try:
        yield cache
    finally:
        del DatasetCatalog.get, DatasetCatalog._lt_loaded_once
        cache.clear()


def release_loaded_dataset_dicts() -> None:
    """Drop the lists `dataset_dicts_loaded_once` holds (a later `get` in its block loads again).

    A trainer calls it once its loader holds the serialized copy and its model the class statistics, so that what is
    built next (the DDP wrapper's buffers) does not add to the lists.
    """
    cache = getattr(DatasetCatalog, "_lt_loaded_once", None)
    if cache is not None:
        cache.clear()


def default_lt_shapes_root() -> str:
    """$LT_SHAPES_DIR if set, else ~/.cache/lt_detectron/lt_shapes."""
    return os.environ.get("LT_SHAPES_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "lt_detectron", "lt_shapes"
    )


def ensure_lt_shapes(root: str | os.PathLike) -> str:
    """Generate the default lt_shapes (seed 0) into root unless a complete one is there already.

    A complete dataset in root is used as is, whatever its seed or size (e.g. one written by the CLI).
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    with _GENERATION_LOCK:
        if not is_complete(root):
            logger.info("Generating the lt_shapes dataset into %s (first use) ...", root)
            try:
                generate_lt_shapes(root, seed=0, overwrite=True)
            except FileExistsError as e:
                raise FileExistsError(str(e)) from None
    return root


def ensure_datasets(dataset_names: str | Sequence[str]) -> None:
    """Generate the lt_shapes data behind any of `dataset_names` that is not on disk yet (others: nothing to do)."""
    from detectron2.data import MetadataCatalog

    for name in [dataset_names] if isinstance(dataset_names, str) else dataset_names:
        if name in LT_SHAPES_SPLITS and name in MetadataCatalog.list():
            root = MetadataCatalog.get(name).as_dict().get("dataset_root")
            if root:
                ensure_lt_shapes(root)


class _LTShapesMetadata(Metadata):
    """Metadata whose `class_image_count` (the form Detectron2's federated loss reads) is derived on first read from
    the class statistics of lt_shapes_train, for both splits (fed loss and class weights never read val counts)."""

    derives_class_image_count = True  # lt_detectron.data.stats leaves this field to us

    def __getattr__(self, key):  # only called for attributes not set yet
        if key == "class_image_count" and "dataset_root" in self.__dict__:
            from .stats import dataset_class_stats

            counts = dataset_class_stats("lt_shapes_train")["image_count"]
            value = [{"id": i + 1, "image_count": int(n)} for i, n in enumerate(counts)]
            object.__setattr__(self, key, value)
            return value
        return super().__getattr__(key)


def _load_split(json_file: str, image_root: str) -> List[dict]:
    ensure_lt_shapes(os.path.dirname(json_file))
    validate_lvis_json(json_file)
    # dataset_name=None: Detectron2 would otherwise look up builtin LVIS metadata for the name and fail.
    return load_lvis_json(json_file, image_root, dataset_name=None)


def register_lt_shapes(root: Optional[str | os.PathLike] = None) -> str:
    """(Re-)register lt_shapes_train / lt_shapes_val with data in `root` (default: `default_lt_shapes_root()`).

    Metadata: thing_classes, evaluator_type "lvis", json_file, image_root, class_image_count (lazy). Calling it again
    with another root replaces the earlier registration. Returns the absolute root.
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root or default_lt_shapes_root())))
    # load_lvis_json joins image_root + "<split>/<file>" with no separator, hence the trailing "/".
    image_root = os.path.join(root, "images") + os.sep
    for name, json_name in LT_SHAPES_SPLITS.items():
        json_file = os.path.join(root, json_name)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda j=json_file: _load_split(j, image_root))
        fields = dict(
            thing_classes=category_names(),
            evaluator_type="lvis",
            json_file=json_file,
            image_root=image_root,
            dataset_root=root,
        )
        MetadataCatalog[name] = _LTShapesMetadata(name=name, **fields)
    return root


JSON_FORMATS = ("auto", "lvis", "coco")


def _json_format(data: dict, path: str) -> str:
    """'lvis' when the file carries LVIS's fields (images' neg_category_ids, categories' frequency), else 'coco'."""
    images, categories = data.get("images") or [], data.get("categories") or []
    if not isinstance(images, list) or not isinstance(categories, list) or not categories:
        raise ValueError(f"{path}: not an LVIS- or COCO-format annotation file (no 'images' / 'categories' lists).")
    lvis = any(isinstance(i, dict) and "neg_category_ids" in i for i in images[:100]) or any(
        isinstance(c, dict) and "frequency" in c for c in categories
    )
    return "lvis" if lvis else "coco"


def register_json_datasets(entries: Sequence[Sequence[str]]) -> List[str]:
    """Register LVIS- or COCO-format json files under new names (DATASETS.LT_JSON_DATASETS).

    Each entry is (name, json_file, image_root) or (name, json_file, image_root, format) with format "auto" (the
    default: LVIS when the file has LVIS's fields), "lvis" or "coco". LVIS-format files are loaded with Detectron2's
    LVIS loader (category ids 1..C) and evaluated with LVIS AP; COCO-format files with Detectron2's COCO loader and
    evaluator. The training-time checks and class statistics are those of every LVIS-format set (docs/
    class_statistics.md). Registering a name again replaces the earlier registration. Returns the names.
    """
    from detectron2.data.datasets import register_coco_instances

    from .validation import load_annotation_json

    names = []
    for entry in entries:
        entry = tuple(entry)
        if len(entry) not in (3, 4) or not all(isinstance(v, str) and v for v in entry):
            raise ValueError(
                f"DATASETS.LT_JSON_DATASETS: each entry is (name, json_file, image_root[, format]) of non-empty "
                f"strings; got {entry!r}. Fix, e.g.: DATASETS.LT_JSON_DATASETS "
                "\"(('my_train', 'data/train.json', 'data/images'),)\""
            )
        name, json_file, image_root = entry[:3]
        fmt = entry[3] if len(entry) == 4 else "auto"
        if fmt not in JSON_FORMATS:
            raise ValueError(f"DATASETS.LT_JSON_DATASETS {name!r}: format must be one of {JSON_FORMATS}; got {fmt!r}.")
        json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"DATASETS.LT_JSON_DATASETS {name!r}: annotation file {json_file} does not exist.")
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"DATASETS.LT_JSON_DATASETS {name!r}: image folder {image_root} does not exist.")
        if name in DatasetCatalog.list() and MetadataCatalog.get(name).get("lt_json_dataset") is None:
            raise ValueError(
                f"DATASETS.LT_JSON_DATASETS: {name!r} is already a registered dataset (e.g. a Detectron2 builtin); "
                "choose another name."
            )
        data = load_annotation_json(json_file)
        if fmt == "auto":
            fmt = _json_format(data, json_file)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        if fmt == "coco":
            register_coco_instances(name, {}, json_file, image_root)
        else:
            categories = sorted(data["categories"], key=lambda c: c["id"])
            # load_lvis_json joins image_root and the file name with no separator.
            root = image_root + os.sep
            DatasetCatalog.register(name, lambda j=json_file, r=root: load_lvis_json(j, r, dataset_name=None))
            MetadataCatalog.get(name).set(
                thing_classes=[c["name"] for c in categories],
                evaluator_type="lvis",
                json_file=json_file,
                image_root=root,
            )
        MetadataCatalog.get(name).set(lt_json_dataset=fmt)
        logger.info("registered %s: %s-format %s, images in %s", name, fmt, json_file, image_root)
        names.append(name)
    return names
