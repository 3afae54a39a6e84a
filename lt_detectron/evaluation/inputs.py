"""Load and check LVIS ground truth and results for the evaluators; every error names the first bad record.

`LVISGroundTruth` indexes an LVIS-format ground-truth dict (images with `neg_category_ids` and
`not_exhaustive_category_ids`, categories with `frequency`); `Detections` holds a results list as columns
(image index, category index, score, box) plus the masks, after checking every record.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .fast_json import RLEColumn, read_results_columns
from .gc_pause import gc_paused

__all__ = [
    "LVISInputError", "LVISGroundTruth", "Detections", "load_json", "load_ground_truth", "load_detections",
    "load_inputs",
]  # fmt: skip

JsonLike = Union[str, os.PathLike, dict, list]
_NOT_READ = object()  # load_detections: the results file has not been through the fast reader yet


class LVISInputError(ValueError):
    """Bad ground truth or results given to an LVIS evaluator (the message names the record, the field, the fix)."""


def load_json(source: JsonLike, what: str) -> Any:
    """Read a json file, or pass a dict or list through.

    Args:
        source: a path, or an already loaded dict or list.
        what: what the file is ("ground-truth", "results"), for the error messages.

    Returns:
        The loaded json value (`source` itself for a dict or list).

    Raises:
        LVISInputError: the file does not exist or is not valid json.
    """
    if isinstance(source, (dict, list)):
        return source
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise LVISInputError(f"{what} file {path!r} does not exist; pass the path of an existing json file.")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise LVISInputError(f"{what} file {path!r} is not valid json ({err}); re-export it.") from err


@dataclass
class GTColumns:
    """The annotations (area > 0) as columns, sorted by category index, json order within a category."""

    cat_start: np.ndarray  # [K + 1] row range of each category index
    cat_index: np.ndarray  # [G] int64
    img_index: np.ndarray  # [G] int64, into LVISGroundTruth.img_ids
    area: np.ndarray  # [G] float64, the annotation's 'area'
    ann_id: np.ndarray  # [G] int64
    bbox: np.ndarray  # [G, 4] float64 (x, y, w, h)
    anns: List[dict]  # the annotation dicts, same order (masks are converted from these)


@dataclass
class LVISGroundTruth:
    """An LVIS-format ground truth, indexed for evaluation. Category and image indices are into the sorted ids.

    `source` names the input in messages (the path's repr, or "(dict)"); `images` are the image records sorted by id.
    """

    source: str
    images: List[dict]
    categories: List[dict]  # sorted by id
    cat_ids: np.ndarray  # sorted
    img_ids: np.ndarray  # sorted
    img_hw: np.ndarray  # [num_images, 2] (height, width) by image index
    anns_by_cat: List[List[dict]]  # annotations with area > 0 (lvis-api drops the others), per category index
    neg_pairs: np.ndarray  # sorted int64 keys img_index * num_cats + cat_index of the negative lists
    pos_pairs: np.ndarray  # same for the (image, category) pairs with an annotation
    nel_pairs: np.ndarray  # same for the not-exhaustive lists
    not_exhaustive: List[frozenset] = field(default_factory=list)  # category ids, by image index
    frequency: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # 'r'/'c'/'f' by category index
    _columns: Optional["GTColumns"] = field(default=None, repr=False, compare=False)

    def columns(self) -> "GTColumns":
        """The annotations of `anns_by_cat` as columns, class by class (built on first use, then kept).

        Returns:
            The columns; the rows of category index c are `cat_start[c]:cat_start[c + 1]`, in json order.
        """
        if self._columns is None:
            anns = [a for per_cat in self.anns_by_cat for a in per_cat]
            counts = self.instance_counts()
            img_index = np.searchsorted(self.img_ids, np.array([a["image_id"] for a in anns], dtype=np.int64))
            self._columns = GTColumns(
                cat_start=np.r_[0, np.cumsum(counts)].astype(np.int64),
                cat_index=np.repeat(np.arange(self.num_cats, dtype=np.int64), counts),
                img_index=img_index.astype(np.int64),
                area=np.array([float(a["area"]) for a in anns], dtype=np.float64),
                ann_id=np.array([a["id"] for a in anns], dtype=np.int64),
                bbox=np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
                anns=anns,
            )
        return self._columns

    @property
    def num_cats(self) -> int:
        """K, the number of categories."""
        return len(self.cat_ids)

    def pair_keys(self, img_index: np.ndarray, cat_index: np.ndarray) -> np.ndarray:
        """The int64 keys `img_index * K + cat_index` of (image, category) pairs, as in `neg_pairs` and `pos_pairs`.

        Args:
            img_index: image indices.
            cat_index: category indices, of the same shape.

        Returns:
            The keys, of that shape.
        """
        return img_index.astype(np.int64) * self.num_cats + cat_index.astype(np.int64)

    def instance_counts(self) -> np.ndarray:
        """[K] int64 number of annotations (with area > 0) per category index."""
        return np.array([len(a) for a in self.anns_by_cat], dtype=np.int64)


def _gt_error(source: str, msg: str) -> LVISInputError:
    return LVISInputError(
        f"ground truth {source}: {msg}. An LVIS-format ground truth (LVIS v1 val json) has 'images' with "
        f"'id', 'height', 'width', 'neg_category_ids', 'not_exhaustive_category_ids'; 'annotations' with 'id', "
        f"'image_id', 'category_id', 'bbox', 'area' (and 'segmentation' for segm); 'categories' with 'id', 'name', "
        f"'frequency' in r/c/f. Convert the file to that format (a COCO json lacks the federated lists)."
    )


@gc_paused
def load_ground_truth(source: JsonLike) -> LVISGroundTruth:
    """Read and check an LVIS-format ground truth (path or dict).

    Args:
        source: the path of an LVIS-format json, or its loaded dict.

    Returns:
        The indexed ground truth.

    Raises:
        LVISInputError: naming the first record that is missing or malformed.
    """
    name = repr(os.fspath(source)) if not isinstance(source, (dict, list)) else "(dict)"
    data = load_json(source, "ground-truth")
    if not isinstance(data, dict):
        raise _gt_error(name, f"the top level is a {type(data).__name__}, not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _gt_error(name, f"the top-level key {key!r} is missing or not a list")
    categories = data["categories"]
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise _gt_error(name, f"categories[{i}] has no integer 'id'")
        if cat.get("frequency") not in ("r", "c", "f"):
            raise _gt_error(name, f"categories[{i}] (id {cat['id']}) has frequency {cat.get('frequency')!r}")
    categories = sorted(categories, key=lambda c: c["id"])
    cat_ids = np.array([c["id"] for c in categories], dtype=np.int64)
    if len(np.unique(cat_ids)) != len(cat_ids):
        raise _gt_error(name, "category ids repeat")
    images = data["images"]
    for i, img in enumerate(images):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int):
            raise _gt_error(name, f"images[{i}] has no integer 'id'")
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            if not isinstance(img.get(key), list):
                raise _gt_error(name, f"images[{i}] (id {img['id']}) has no list {key!r}")
        for key in ("height", "width"):
            if not isinstance(img.get(key), int) or img[key] <= 0:
                raise _gt_error(name, f"images[{i}] (id {img['id']}) has {key}={img.get(key)!r}")
    images = sorted(images, key=lambda d: d["id"])
    img_ids = np.array([d["id"] for d in images], dtype=np.int64)
    if len(np.unique(img_ids)) != len(img_ids):
        raise _gt_error(name, "image ids repeat")
    num_cats = len(cat_ids)
    img_pos = {int(v): i for i, v in enumerate(img_ids.tolist())}  # dict look-ups: one numpy call per id is slower
    cat_pos = {int(v): i for i, v in enumerate(cat_ids.tolist())}
    anns_by_cat: List[List[dict]] = [[] for _ in range(num_cats)]
    pos: List[int] = []
    for i, ann in enumerate(data["annotations"]):
        try:
            img_id, cat_id, area = ann["image_id"], ann["category_id"], float(ann["area"])
            bbox = ann["bbox"]
        except (KeyError, TypeError, ValueError) as err:
            raise _gt_error(name, f"annotations[{i}] lacks a valid {err} field") from None
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise _gt_error(name, f"annotations[{i}] has bbox {bbox!r}")
        if ann.get("ignore"):
            raise _gt_error(name, f"annotations[{i}] has 'ignore' set, which this evaluator does not support")
        ii = img_pos.get(img_id) if isinstance(img_id, (int, float)) else None
        ci = cat_pos.get(cat_id) if isinstance(cat_id, (int, float)) else None
        if ii is None:
            raise _gt_error(name, f"annotations[{i}] has image_id {img_id!r}, which is not in 'images'")
        if ci is None:
            raise _gt_error(name, f"annotations[{i}] has category_id {cat_id!r}, which is not in 'categories'")
        if not area > 0 or math.isinf(area):
            continue  # lvis-api's get_ann_ids keeps 0 < area < inf only
        anns_by_cat[ci].append(ann)
        pos.append(ii * num_cats + ci)
    neg: List[int] = []
    nel: List[int] = []
    for ii, img in enumerate(images):
        for field_name, out in (("neg_category_ids", neg), ("not_exhaustive_category_ids", nel)):
            for c in img[field_name]:
                ci = cat_pos.get(c) if isinstance(c, (int, float)) else None
                if ci is None:
                    raise _gt_error(name, f"image id {img['id']} lists {field_name} {c!r}, not in 'categories'")
                out.append(ii * num_cats + ci)
    return LVISGroundTruth(
        source=name,
        images=images,
        categories=categories,
        cat_ids=cat_ids,
        img_ids=img_ids,
        img_hw=np.array([[d["height"], d["width"]] for d in images], dtype=np.int64).reshape(-1, 2),
        anns_by_cat=anns_by_cat,
        neg_pairs=np.unique(np.array(neg, dtype=np.int64)),
        pos_pairs=np.unique(np.array(pos, dtype=np.int64)),
        nel_pairs=np.unique(np.array(nel, dtype=np.int64)),
        not_exhaustive=[frozenset(d["not_exhaustive_category_ids"]) for d in images],
        frequency=np.array([c["frequency"] for c in categories], dtype=object),
    )


@dataclass
class Detections:
    """A results list as columns; `index` is each row's position in the original list (for error messages)."""

    img_index: np.ndarray  # int64, into LVISGroundTruth.img_ids
    cat_index: np.ndarray  # int64, into LVISGroundTruth.cat_ids
    score: np.ndarray  # float64
    bbox: Optional[np.ndarray]  # [N, 4] float64 (x, y, w, h), None if the results have no boxes
    segmentation: Optional[Union[List[Any], RLEColumn]]  # per row, None if the results have no masks
    index: np.ndarray  # int64, original position

    def __len__(self) -> int:
        return len(self.score)

    def subset(self, rows: np.ndarray) -> "Detections":
        """The given rows, in that order (an `RLEColumn` keeps reading the same bytes, see `RLEColumn.view`).

        Args:
            rows: int row indices.

        Returns:
            A new `Detections` of len(rows) rows.
        """
        if self.segmentation is None:
            seg = None
        elif isinstance(self.segmentation, RLEColumn):
            seg = self.segmentation.view(rows)  # the strings stay in the file's bytes; a chunk decodes its masks there
        else:
            seg = [self.segmentation[i] for i in rows.tolist()]
        return Detections(
            self.img_index[rows],
            self.cat_index[rows],
            self.score[rows],
            None if self.bbox is None else self.bbox[rows],
            seg,
            self.index[rows],
        )


def _positions(ids: np.ndarray, known_sorted: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Positions of `ids` in the sorted array `known_sorted`, and the index of the first id not in it (or None)."""
    compact = len(known_sorted) and 0 <= known_sorted[0] and known_sorted[-1] < 4 * (len(ids) + len(known_sorted))
    if compact:
        # ids of a compact range (LVIS's): a look-up table, one gather instead of a binary search per id
        table = np.full(int(known_sorted[-1]) + 2, -1, dtype=np.int64)  # the last entry: any id out of range
        table[known_sorted] = np.arange(len(known_sorted))
        index = table[np.where((ids >= 0) & (ids <= known_sorted[-1]), ids, len(table) - 1)]
        bad = index < 0
    else:
        index = np.searchsorted(known_sorted, ids)
        bad = (index >= len(known_sorted)) | (known_sorted[np.minimum(index, len(known_sorted) - 1)] != ids)
    return index, (int(np.argmax(bad)) if bad.any() else None)


def _record_error(source: str, index: int, field_name: str, problem: str, fix: str) -> LVISInputError:
    return LVISInputError(f"results {source}: record [{index}] field {field_name!r} {problem}; {fix}")


def _is_integer_type(t: type) -> bool:
    """A JSON integer (or numpy integer); not a bool, which Python counts as an int."""
    return issubclass(t, (int, np.integer)) and not issubclass(t, (bool, np.bool_))


def _is_number_type(t: type) -> bool:
    """A JSON number (or numpy number); not a bool and not a string holding a number."""
    return issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, (bool, np.bool_))


def _find_bad_record(results: Sequence[Any], source: str, need: Sequence[str]) -> LVISInputError:
    """Slow path: scan for the first record that is not a dict with the needed fields of the right types."""
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return _record_error(
                source, i, "(record)", f"is {repr(r)[:80]} (a {type(r).__name__}), not a record",
                "each entry of the results list must be an object {image_id, category_id, bbox, score[, "
                "segmentation]}; remove or fix this entry",
            )  # fmt: skip
        for key in need:
            if key not in r:
                return _record_error(source, i, key, "is missing", "every result needs image_id, category_id, score")
        for key in ("image_id", "category_id"):
            if not _is_integer_type(type(r[key])):
                return _record_error(source, i, key, f"is {r[key]!r}", "write ids as integers")
        if not _is_number_type(type(r["score"])):
            return _record_error(
                source, i, "score", f"is {r['score']!r} (a {type(r['score']).__name__})",
                "write the score as a JSON number, e.g. 0.9 (not a string or a boolean)",
            )  # fmt: skip
        if "bbox" in need:
            b = r["bbox"]
            ok = isinstance(b, (list, tuple)) and len(b) == 4
            ok = ok and all(_is_number_type(type(v)) for v in b)
            if not ok:
                return _record_error(
                    source, i, "bbox", f"is {b!r}", "write the box as [x, y, width, height] (4 numbers, XYWH_ABS)"
                )
        if "segmentation" in need and not isinstance(r["segmentation"], (dict, list)):
            return _record_error(
                source, i, "segmentation", f"is {r['segmentation']!r}", "write the mask as an RLE or polygons"
            )
    return LVISInputError(f"results {source}: records could not be read as columns (no bad record found)")


@gc_paused
def load_detections(
    source: JsonLike,
    gt: LVISGroundTruth,
    need_bbox: bool = True,
    need_segm: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
    columns: Any = _NOT_READ,
) -> Detections:
    """Check a results list (or json file) against `gt` and hold it as columns. Nothing is dropped here.

    A file written by Detectron2 is read by `fast_json.read_results_columns`; any other layout goes through
    `json.load` and the per-record checks.

    Args:
        source: a results json path, or the loaded list of {image_id, category_id, bbox, score[, segmentation]}.
        gt: the ground truth the ids are checked against.
        need_bbox: read and check the boxes (bbox evaluation); else `bbox` is None.
        need_segm: read and check the masks (segm evaluation); else `segmentation` is None.
        progress: optional callback `progress(done, total)` of the fast file reader (called once the file is read).
        columns: what `read_results_columns` already returned for the file `source` (see `load_inputs`): its
            columns, or None when it declined the layout (then `json.load` reads the file, not the reader again).

    Returns:
        The detections as columns, in the order of `source`.

    Raises:
        LVISInputError: naming the first bad record.
    """
    name = repr(os.fspath(source)) if not isinstance(source, (dict, list)) else "(list)"
    fast = None
    if not isinstance(source, (dict, list)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise LVISInputError(f"results file {path!r} does not exist; pass the path of an existing json file.")
        fast = (
            read_results_columns(path, progress=progress, with_masks=need_segm, with_boxes=need_bbox)
            if columns is _NOT_READ
            else columns
        )
    results: Any = None
    if fast is not None:
        img, cat, score, bbox = fast.image_id, fast.category_id, fast.score, fast.bbox
        seg: Any = fast.segmentation
        if need_segm and seg is None:
            raise LVISInputError(f"results {name} have no 'segmentation'; evaluate iou type bbox only.")
        seg = seg if need_segm else None
        bbox = bbox if need_bbox else None
        seg = seg if need_segm else None
    else:
        results = load_json(source, "results")
        if not isinstance(results, list):
            raise LVISInputError(
                f"results {name}: the top level is a {type(results).__name__}; an LVIS results file is a list of "
                f"{{image_id, category_id, bbox, score[, segmentation]}} objects "
                f"(Detectron2's lvis_instances_results.json)."
            )
        n = len(results)
        need = ["image_id", "category_id", "score"]
        need += (["bbox"] if need_bbox else []) + (["segmentation"] if need_segm else [])
        try:
            # One column per field (a record that is not a dict or lacks a field fails here), then the types of each
            # column as a set: fromiter and np.array would coerce ids stored as floats (1.0), bools (true -> 1) and
            # numbers written as strings ("0.9"); such a record is named like the slow path does.
            ids = [list(map(itemgetter(key), results)) for key in ("image_id", "category_id")]
            scores = list(map(itemgetter("score"), results))
            boxes = list(map(itemgetter("bbox"), results)) if need_bbox else []
            seg = list(map(itemgetter("segmentation"), results)) if need_segm else None
            typed = all(_is_integer_type(t) for t in set(map(type, ids[0])) | set(map(type, ids[1])))
            typed = typed and all(_is_number_type(t) for t in set(map(type, scores)))
            typed = typed and all(_is_number_type(t) for t in set(map(type, chain.from_iterable(boxes))))
            if not typed:
                raise TypeError
            img = np.fromiter(ids[0], dtype=np.int64, count=n)
            cat = np.fromiter(ids[1], dtype=np.int64, count=n)
            score = np.fromiter(scores, dtype=np.float64, count=n)
            bbox = np.array(boxes, dtype=np.float64).reshape(n, 4) if need_bbox else None
        except (KeyError, TypeError, ValueError):
            raise _find_bad_record(results, name, need) from None
        del ids, scores, boxes
    n = len(score)

    img_index, i = _positions(img, gt.img_ids)
    if i is not None:
        raise _record_error(
            name, i, "image_id", f"is {int(img[i])}, which is not an image of the ground truth {gt.source}",
            "evaluate against the ground truth the predictions were made on",
        )  # fmt: skip
    cat_index, i = _positions(cat, gt.cat_ids)
    if i is not None:
        raise _record_error(
            name, i, "category_id", f"is {int(cat[i])}, which is not a category of the ground truth {gt.source}",
            "map contiguous class indices back to dataset category ids (Detectron2: thing_dataset_id_to_contiguous_id)",
        )  # fmt: skip
    bad = ~np.isfinite(score) | (score < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise _record_error(name, i, "score", f"is {score[i]!r}", "scores must be finite and >= 0")
    if bbox is not None:
        bad = ~np.isfinite(bbox).all(axis=1) | (bbox[:, 2] < 0) | (bbox[:, 3] < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise _record_error(
                name, i, "bbox", f"is {bbox[i].tolist()!r}",
                "write [x, y, width, height] with finite values and width, height >= 0 (XYWH_ABS, not XYXY)",
            )  # fmt: skip
    hw = gt.img_hw[img_index]
    if isinstance(seg, RLEColumn):
        bad = (seg.hw != hw).any(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise _record_error(
                name, i, "segmentation", f"has size {seg.hw[i].tolist()}, but image {int(img[i])} is "
                f"{hw[i].tolist()}", "encode the mask at the image's height and width",
            )  # fmt: skip
    elif seg is not None:
        for i, s in enumerate(seg):
            if isinstance(s, dict):
                size, counts = s.get("size"), s.get("counts")
                if not (isinstance(counts, (str, bytes, list)) and isinstance(size, list) and len(size) == 2):
                    raise _record_error(
                        name, i, "segmentation", f"is {str(s)[:80]!r}",
                        "write masks as RLE {'size': [height, width], 'counts': ...} (pycocotools.mask.encode)",
                    )  # fmt: skip
                if size[0] != hw[i, 0] or size[1] != hw[i, 1]:
                    raise _record_error(
                        name, i, "segmentation", f"has size {size}, but image {int(img[i])} is {hw[i].tolist()}",
                        "encode the mask at the image's height and width",
                    )  # fmt: skip
            elif not (isinstance(s, list) and all(isinstance(p, list) and len(p) >= 6 for p in s)):
                raise _record_error(
                    name, i, "segmentation", f"is {str(s)[:80]!r}", "write masks as RLE or a list of polygons"
                )
    return Detections(img_index.astype(np.int64), cat_index.astype(np.int64), score, bbox, seg, np.arange(n))


def results_have(results: Sequence[Dict], key: str) -> bool:
    return bool(results) and isinstance(results[0], dict) and key in results[0]


def load_inputs(
    gt_source: JsonLike,
    results_source: JsonLike,
    need_bbox: bool = True,
    need_segm: bool = False,
    concurrent: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Tuple[LVISGroundTruth, Detections]:
    """`load_ground_truth` and `load_detections` of both sources; with `concurrent`, a results file is read in a
    thread while the ground truth loads (the C reader releases the GIL: two cores, about the time of the longer).

    Args:
        gt_source: the ground truth (see `load_ground_truth`).
        results_source: the results (see `load_detections`).
        need_bbox: read and check the boxes.
        need_segm: read and check the masks.
        concurrent: read the results file in a second thread.
        progress: optional callback of the results file reader.

    Returns:
        (ground truth, detections).
    """
    if not concurrent or isinstance(results_source, (dict, list)) or not os.path.isfile(results_source):
        gt = load_ground_truth(gt_source)
        return gt, load_detections(results_source, gt, need_bbox, need_segm, progress)
    with ThreadPoolExecutor(1) as pool:  # an error in the ground truth is raised once the reader has finished
        reading = pool.submit(read_results_columns, results_source, progress, need_segm, need_bbox)
        gt = load_ground_truth(gt_source)
        gt.columns()  # built while the reader still runs, and before the evaluator's workers fork
        columns = reading.result()
    return gt, load_detections(results_source, gt, need_bbox, need_segm, progress, columns=columns)
