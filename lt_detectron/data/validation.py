"""Early, readable checks of LVIS-format annotation files and of the real-LVIS folders.

A malformed file should fail before training starts with a message naming the file, the field
(e.g. ``annotations[12].bbox``) and the fix, instead of an assert deep inside a data loader worker.
"""

from __future__ import annotations

import json
import os
from numbers import Real
from typing import Any, Dict, Sequence, Set, Tuple

__all__ = [
    "AnnotationError",
    "validate_lvis_json",
    "validate_lvis_dict",
    "check_lvis_available",
    "check_datasets",
    "is_builtin_lvis",
    "is_validated",
    "load_annotation_json",
    "LVIS_DOWNLOAD_HELP",
]

LVIS_DOWNLOAD_HELP = (
    "Download the LVIS v1 annotations (lvis_v1_train.json, lvis_v1_val.json) from https://www.lvisdataset.org/dataset "
    "into $DETECTRON2_DATASETS/lvis/ and the COCO 2017 train and val images from https://cocodataset.org/#download "
    "into $DETECTRON2_DATASETS/coco/train2017 and $DETECTRON2_DATASETS/coco/val2017 "
    "(Detectron2's datasets/README.md describes this layout; DETECTRON2_DATASETS defaults to ./datasets)."
)
# Boxes and polygons may overhang the image by rounding error (real LVIS has float coordinates).
_TOLERANCE_PX = 1.0


class AnnotationError(ValueError):
    """A malformed or inconsistent annotation file: the message names the file, the field and the fix."""

    def __init__(self, path: str | os.PathLike, field: str, problem: str, fix: str):
        self.path, self.field, self.problem, self.fix = str(path), field, problem, fix
        super().__init__(f"{path}: {field}: {problem}. Fix: {fix}")


# (path, mtime_ns, size) of the files already validated in this process.
_VALIDATED: Set[Tuple[str, int, int]] = set()


def validate_lvis_json(path: str | os.PathLike, require_annotations: bool = True, data: Any = None) -> None:
    """Check an LVIS-format json before Detectron2/lvis-api read it; raise AnnotationError on the first problem.

    Checks the fields lvis-api, LVISEval and Detectron2's `load_lvis_json` rely on: top-level lists, category ids
    contiguous 1..C with a frequency in r/c/f, unique image ids with width/height/coco_url and the negative /
    not-exhaustive lists, annotations with known image and category ids, boxes and polygons inside their image,
    and a non-empty split. Results are cached per (path, mtime, size), so calling it on every registration is cheap.
    `require_annotations=False` accepts image-info files (test-dev) that have no annotations. `data`: the file's
    content when the caller has loaded it already (it is then not read again).
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise AnnotationError(
            path, "<file>", "the annotation file does not exist", "check the path or generate/download the dataset"
        )
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if key in _VALIDATED:
        return
    if data is None:
        data = load_annotation_json(path)
    validate_lvis_dict(data, path, require_annotations=require_annotations)
    _VALIDATED.add(key)


def load_annotation_json(path: str | os.PathLike) -> Any:
    """json.load an annotation file; a malformed one raises AnnotationError naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(path, "<file>", f"not valid JSON ({e})", "re-download or regenerate the file") from None


def is_validated(path: str | os.PathLike) -> bool:
    """Whether `validate_lvis_json` already passed on this file (same path, mtime and size) in this process."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        return False
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size) in _VALIDATED


def validate_lvis_dict(data: Any, path: str = "<dict>", require_annotations: bool = True) -> None:
    """`validate_lvis_json` on an already-loaded dict; `path` is only used in the messages."""
    if not isinstance(data, dict):
        raise AnnotationError(
            path,
            "<top level>",
            f"expected a JSON object, got {type(data).__name__}",
            "write an LVIS-format dict with images, annotations and categories",
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(path, key, "missing", f"add the '{key}' list (LVIS v1 format)")
        if not isinstance(data[key], list):
            raise AnnotationError(
                path, key, f"must be a list, got {type(data[key]).__name__}", f"store '{key}' as a JSON list"
            )

    num_classes = _check_categories(data["categories"], path)
    sizes = _check_images(data["images"], path, num_classes)
    if require_annotations and not data["annotations"]:
        raise AnnotationError(
            path,
            "annotations",
            "the split is empty (0 annotations)",
            "generate or download a split with at least one annotated object",
        )
    seen_ids = set()
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, f"annotations[{i}]", path, sizes, num_classes, seen_ids)


# Exact JSON types accepted without the (slow, ABC-based) isinstance check: the common case of a well-formed file.
_JSON_TYPES = {int: (int,), str: (str,), list: (list,), Real: (int, float)}
_MISSING = object()


_FAST_NUMBER_TYPES = {int, float}


def _numbers(values: list) -> bool:
    """Every item is a real number (exact int/float checked in C first: isinstance against numbers.Real is slow
    over LVIS's 1.27 M annotations)."""
    return set(map(type, values)) <= _FAST_NUMBER_TYPES or all(isinstance(v, Real) for v in values)


def _need(record: Any, field: str, where: str, path: str, kind: type | Tuple[type, ...], fix: str) -> Any:
    if type(record) is dict:
        value = record.get(field, _MISSING)
        if type(value) in _JSON_TYPES.get(kind, ()):
            return value
    if not isinstance(record, dict):
        raise AnnotationError(path, where, f"must be a JSON object, got {type(record).__name__}", fix)
    if field not in record:
        raise AnnotationError(path, f"{where}.{field}", "missing", fix)
    value = record[field]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise AnnotationError(path, f"{where}.{field}", f"must be {names}, got {value!r}", fix)
    return value


def _check_categories(categories: list, path: str) -> int:
    if not categories:
        raise AnnotationError(path, "categories", "empty", "list every category with id, name and frequency")
    ids = []
    for i, cat in enumerate(categories):
        where = f"categories[{i}]"
        ids.append(_need(cat, "id", where, path, int, "give every category an integer id"))
        _need(cat, "name", where, path, str, "give every category a name")
        freq = _need(
            cat,
            "frequency",
            where,
            path,
            str,
            "set frequency to 'r', 'c' or 'f' from the TRAIN image count (LVISEval needs it)",
        )
        if freq not in ("r", "c", "f"):
            raise AnnotationError(
                path,
                f"{where}.frequency",
                f"must be 'r', 'c' or 'f', got {freq!r}",
                "use 'r' (1-10 training images), 'c' (11-100) or 'f' (>100)",
            )
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise AnnotationError(
            path,
            "categories[*].id",
            f"ids must be contiguous 1..{len(ids)} without repeats, got {sorted(ids)[:10]}...",
            "renumber the categories 1..C (Detectron2's LVIS loader maps id -> id - 1) "
            "and remap annotations[*].category_id",
        )
    return len(ids)


def _check_images(images: list, path: str, num_classes: int) -> Dict[int, Tuple[int, int]]:
    if not images:
        raise AnnotationError(
            path, "images", "the split is empty (0 images)", "generate or download a split with at least one image"
        )
    sizes: Dict[int, Tuple[int, int]] = {}
    for i, img in enumerate(images):
        where = f"images[{i}]"
        image_id = _need(img, "id", where, path, int, "give every image a unique integer id")
        if image_id in sizes:
            raise AnnotationError(path, f"{where}.id", f"duplicate image id {image_id}", "make image ids unique")
        width = _need(img, "width", where, path, int, "store the image width in pixels")
        height = _need(img, "height", where, path, int, "store the image height in pixels")
        if width <= 0 or height <= 0:
            raise AnnotationError(
                path, f"{where}.width/height", f"must be positive, got {width}x{height}", "store the real image size"
            )
        url = _need(
            img,
            "coco_url",
            where,
            path,
            str,
            "set coco_url to '<any host>/<split folder>/<file name>' "
            "(Detectron2 builds the file path from its last two parts)",
        )
        if len(url.split("/")) < 2:
            raise AnnotationError(
                path,
                f"{where}.coco_url",
                f"needs '<split folder>/<file name>', got {url!r}",
                "e.g. 'http://host/train2017/000000000009.jpg'",
            )
        for field in ("neg_category_ids", "not_exhaustive_category_ids"):
            ids = _need(
                img,
                field,
                where,
                path,
                list,
                f"store {field} as a list of category ids ([] if none); LVISEval reads it",
            )
            for j, c in enumerate(ids):
                if not isinstance(c, int) or not 1 <= c <= num_classes:
                    raise AnnotationError(
                        path,
                        f"{where}.{field}[{j}]",
                        f"unknown category id {c!r}",
                        f"use ids 1..{num_classes} from 'categories'",
                    )
        sizes[image_id] = (width, height)
    return sizes


def _check_annotation(
    ann: Any, where: str, path: str, sizes: Dict[int, Tuple[int, int]], num_classes: int, seen: set
) -> None:
    ann_id = _need(ann, "id", where, path, int, "give every annotation a unique integer id")
    if ann_id in seen:
        raise AnnotationError(path, f"{where}.id", f"duplicate annotation id {ann_id}", "make annotation ids unique")
    seen.add(ann_id)
    image_id = _need(ann, "image_id", where, path, int, "set image_id to the id of its image")
    if image_id not in sizes:
        raise AnnotationError(
            path,
            f"{where}.image_id",
            f"unknown image id {image_id}",
            "add the image to 'images' or drop the annotation",
        )
    cat = _need(ann, "category_id", where, path, int, "set category_id to an id from 'categories'")
    if not 1 <= cat <= num_classes:
        raise AnnotationError(
            path, f"{where}.category_id", f"unknown category id {cat}", f"use ids 1..{num_classes} from 'categories'"
        )
    width, height = sizes[image_id]
    box = _need(ann, "bbox", where, path, list, "store bbox as [x, y, width, height] in pixels")
    if len(box) != 4 or not _numbers(box):
        raise AnnotationError(
            path, f"{where}.bbox", f"must be 4 numbers [x, y, w, h], got {box!r}", "store bbox as [x, y, width, height]"
        )
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise AnnotationError(
            path,
            f"{where}.bbox",
            f"empty box {box} (width and height must be > 0)",
            "drop degenerate objects or fix the box",
        )
    t = _TOLERANCE_PX
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise AnnotationError(
            path,
            f"{where}.bbox",
            f"box {box} lies outside its {width}x{height} image (image id {image_id})",
            "clip the box to the image or fix images[*].width/height",
        )
    segm = _need(
        ann, "segmentation", where, path, list, "store segmentation as a list of polygons [[x1, y1, x2, y2, ...], ...]"
    )
    if not segm:
        raise AnnotationError(path, f"{where}.segmentation", "no polygon", "give every object at least one polygon")
    for k, poly in enumerate(segm):
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not _numbers(poly):
            raise AnnotationError(
                path,
                f"{where}.segmentation[{k}]",
                "a polygon needs an even number (>= 6) of coordinates",
                "store polygons as flat [x1, y1, x2, y2, x3, y3, ...] lists",
            )
        xs, ys = poly[0::2], poly[1::2]
        if min(xs) < -t or min(ys) < -t or max(xs) > width + t or max(ys) > height + t:
            raise AnnotationError(
                path,
                f"{where}.segmentation[{k}]",
                f"polygon lies outside its {width}x{height} image (image id {image_id})",
                "clip the polygon to the image",
            )
    area = _need(ann, "area", where, path, Real, "store the object's area in pixels")
    if area <= 0:
        raise AnnotationError(path, f"{where}.area", f"must be > 0, got {area}", "store the mask area in pixels")


def check_lvis_available(dataset_name: str) -> None:
    """Fail early, naming the missing path and how to get LVIS, when a registered LVIS dataset is not on disk.

    Works for Detectron2's builtin `lvis_v1_*` names (json under $DETECTRON2_DATASETS/lvis, images under
    $DETECTRON2_DATASETS/coco/{train2017,val2017}: LVIS v1 val uses images of both) and for any dataset registered
    with `json_file` / `image_root` metadata. Reads no json, so it is cheap even for the 1 GB LVIS train file.
    """
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name).as_dict()
    if "json_file" not in meta:
        raise ValueError(
            f"dataset {dataset_name!r} has no json_file metadata: register it as an LVIS-format dataset "
            "(detectron2.data.datasets.register_lvis_instances) or use lvis_v1_train / lvis_v1_val"
        )
    is_lvis = dataset_name.startswith("lvis")
    help_text = (
        LVIS_DOWNLOAD_HELP
        if is_lvis
        else "generate or download the dataset first (lt_shapes: lt_detectron.data.ensure_datasets([name]) or "
        "`python -m lt_detectron.data.lt_shapes --out DIR`)"
    )
    required = [("annotation file", meta["json_file"], os.path.isfile)]
    if meta.get("image_root") is not None:
        image_root = str(meta["image_root"])
        required.append(("image folder", image_root, os.path.isdir))
        if is_lvis:  # Detectron2 joins image_root + "train2017" / "val2017" from each coco_url
            required += [("image folder", image_root + split, os.path.isdir) for split in ("train2017", "val2017")]
    for what, where, exists in required:
        if not exists(where):
            raise FileNotFoundError(f"dataset {dataset_name!r}: {what} {os.path.abspath(where)} not found. {help_text}")


# Detectron2's builtin LVIS splits (detectron2/data/datasets/builtin.py): official files, skipped by validate="auto".
BUILTIN_LVIS_PREFIXES = ("lvis_v1_", "lvis_v0.5_")


def is_builtin_lvis(dataset_name: str) -> bool:
    """Whether `dataset_name` is one of Detectron2's builtin LVIS registrations (official annotation files)."""
    return dataset_name.startswith(BUILTIN_LVIS_PREFIXES)


def check_datasets(dataset_names: str | Sequence[str], validate: bool | str = "auto") -> None:
    """Before training/evaluation: every LVIS-format dataset in `dataset_names` is on disk and its json is valid.

    validate: True checks every json, False only that the files exist, "auto" skips the full check for
    Detectron2's builtin LVIS splits (the official files; walking LVIS v1 train's 1.27 M annotations costs a load).
    Datasets without `json_file` metadata (COCO-style registrations of other kinds) are skipped; their own loaders
    report problems. Generating lt_shapes is the caller's step (`lt_detectron.data.ensure_datasets`).
    """
    from detectron2.data import MetadataCatalog

    if validate not in (True, False, "auto"):
        raise ValueError(f"validate must be True, False or 'auto', got {validate!r}")
    for name in [dataset_names] if isinstance(dataset_names, str) else dataset_names:
        json_file = MetadataCatalog.get(name).as_dict().get("json_file")
        if json_file is None:
            continue
        check_lvis_available(name)
        if validate is False or (validate == "auto" and is_builtin_lvis(name)):
            continue
        # "image_info" files (LVIS test-dev/challenge) legitimately have no annotations.
        validate_lvis_json(json_file, require_annotations="image_info" not in os.path.basename(json_file))
