"""Register `lt_shapes_train` / `lt_shapes_val` in Detectron2's catalogs, generated on first use.

Like detectron2.data.datasets.builtin, importing `lt_detectron.data` registers them; nothing is generated until
a dataset's dicts (DatasetCatalog.get) or its `json_file` / `class_image_count` metadata are first read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import types
from typing import List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.datasets.lvis import load_lvis_json

from .lt_shapes import TRAIN_JSON, VAL_JSON, category_names, generate_lt_shapes, is_complete
from .validation import validate_lvis_json

__all__ = ["register_lt_shapes", "default_lt_shapes_root", "ensure_lt_shapes", "LT_SHAPES_SPLITS"]

LT_SHAPES_SPLITS = {"lt_shapes_train": TRAIN_JSON, "lt_shapes_val": VAL_JSON}
_GENERATION_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


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
                raise FileExistsError(
                    f"{e} (set LT_SHAPES_DIR or cfg.DATASETS.LT_SHAPES_DIR to another folder)"
                ) from None
    return root


class _LTShapesMetadata(Metadata):
    """Metadata that generates the dataset when `json_file` or `class_image_count` is first read (LVISEvaluator,
    Detectron2's fed loss, our class weights), so importing lt_detectron.data stays cheap."""

    def __getattribute__(self, key):
        if key == "json_file":
            ensure_lt_shapes(object.__getattribute__(self, "__dict__")["dataset_root"])
        return super().__getattribute__(key)

    def __getattr__(self, key):  # only called for attributes not set yet
        if key == "class_image_count" and "dataset_root" in self.__dict__:
            value = _class_image_count(self.__dict__["dataset_root"])
            types.SimpleNamespace.__setattr__(self, key, value)
            return value
        return super().__getattr__(key)


def _class_image_count(root: str) -> List[dict]:
    ensure_lt_shapes(root)
    with open(os.path.join(root, TRAIN_JSON)) as f:
        categories = json.load(f)["categories"]
    # The format Detectron2's get_fed_loss_cls_weights reads (as LVIS_V1_CATEGORY_IMAGE_COUNT).
    return [{"id": c["id"], "image_count": c["image_count"]} for c in sorted(categories, key=lambda c: c["id"])]


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
        # SimpleNamespace init, not Metadata.set: set() reads json_file back, which would generate the data now.
        MetadataCatalog[name] = _LTShapesMetadata(name=name, **fields)
    return root
