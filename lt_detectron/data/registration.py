"""Register `lt_shapes_train` / `lt_shapes_val` in Detectron2's catalogs, generated explicitly.

Like detectron2.data.datasets.builtin, importing `lt_detectron.data` registers them. Reading metadata never
generates anything (`MetadataCatalog.get("lt_shapes_train").json_file` is just a path); the data are generated on
first use of the dataset dicts (DatasetCatalog.get), by `ensure_datasets` (what tools/train_net.py runs before
`launch`), or by the CLI ``python -m lt_detectron.data.lt_shapes --out DIR``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.datasets.lvis import load_lvis_json

from .lt_shapes import TRAIN_JSON, VAL_JSON, category_names, generate_lt_shapes, is_complete
from .validation import validate_lvis_json

__all__ = ["register_lt_shapes", "default_lt_shapes_root", "ensure_lt_shapes", "ensure_datasets", "LT_SHAPES_SPLITS"]

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
