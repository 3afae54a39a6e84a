"""LVIS AP with lvis-api 0.5.3's exact numbers on faster-coco-eval's C++ matching, sharded by class over processes.

lvis-api (`lvis.LVISEval`) is the reference. The protocol it applies around COCO-style matching is applied here
around faster-coco-eval's C++ `COCOevalEvaluateAccumulate`:

1. per image, keep the 300 highest-scoring detections (a stable sort, as `lvis.LVISResults`); Fixed AP (Dave et al.
   2021, arXiv 2102.01066) instead keeps the K (10,000) highest-scoring detections of each class over the dataset
   and no per-image cap;
2. drop detections with area <= 0 (lvis-api's `get_ann_ids` keeps 0 < area < inf) and detections of a class that is
   neither annotated in the image nor in its `neg_category_ids` (the federated rule; lvis-api skips them too);
3. mark unmatched detections of a class in the image's `not_exhaustive_category_ids` as ignored (`lvis_mark`);
4. for segm, a detection's area is its mask area (Detectron2 drops the result's box before LVISResults).

AP of one class depends only on that class's ground truth and detections, so classes are split into chunks and
evaluated in a process pool; each worker builds the records of its chunk only. The summary (AP, AP50, AP75,
APs/m/l, APr/c/f, AR) is lvis-api's `_summarize` over the reassembled precision/recall arrays, so even the order of
the floating-point sums is lvis-api's.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .fast_json import RLEColumn
from .gc_pause import gc_paused
from .inputs import Detections, JsonLike, LVISGroundTruth, LVISInputError, load_detections, load_ground_truth

__all__ = [
    "LVISEvalResult",
    "evaluate_lvis",
    "summarize_lvis",
    "default_workers",
    "FIXED_AP_DEFAULT_K",
    "SUMMARY_KEYS",
]

logger = logging.getLogger(__name__)

FIXED_AP_DEFAULT_K = 10_000
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNG = [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
AREA_LBL = ["all", "small", "medium", "large"]
FREQ_LBL = ["r", "c", "f"]
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR", "ARs", "ARm", "ARl")


def default_workers() -> int:
    """Worker processes: the CPUs this process may use.

    Returns:
        The number of CPUs in this process's affinity mask (else `os.cpu_count()`), at least 1.
    """
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class LVISEvalResult:
    """One iou type's result. Summary values are fractions (lvis-api's scale); -1 where lvis-api gives -1.

    Attributes:
        iou_type: "bbox" or "segm".
        summary: the `SUMMARY_KEYS` metrics (AP, AP50, ..., APr/c/f, AR, ARs/m/l).
        per_class_ap: [K] AP per category (`per_class_ap`), NaN for a class with no ground truth.
        cat_ids: [K] the categories' json ids, in the order of the class axis.
        precision: [T, R, K, A] precision (IoU thresholds, recall thresholds, classes, area ranges); -1 = undefined.
        recall: [T, K, A] recall; -1 = undefined.
        fixed_ap: whether this is Fixed AP.
        max_dets_per_image: the per-image cap of standard AP.
        timings: seconds per phase.
    """

    iou_type: str
    summary: Dict[str, float]
    per_class_ap: np.ndarray  # [num_cats] AP at IoU .50:.95, all areas; NaN for a class with no ground truth
    cat_ids: np.ndarray
    precision: np.ndarray = field(repr=False)  # [T, R, K, A]
    recall: np.ndarray = field(repr=False)  # [T, K, A]
    fixed_ap: bool = False
    max_dets_per_image: int = 300
    timings: Dict[str, float] = field(default_factory=dict)

    def summary_lvis_names(self) -> Dict[str, float]:
        """The summary keyed as lvis-api's `get_results()` (AR@300, ARs@300, ...)."""
        label = "-1" if self.fixed_ap else str(self.max_dets_per_image)
        return {(k if not k.startswith("AR") else f"{k}@{label}"): v for k, v in self.summary.items()}


def summarize_lvis(precision: np.ndarray, recall: np.ndarray, freq_groups: Sequence[Sequence[int]]) -> Dict[str, float]:
    """lvis-api's `LVISEval.summarize` on precision [T, R, K, A] and recall [T, K, A] (same slicing, same means).

    Args:
        precision: [T, R, K, A] precision; entries of -1 (undefined) are left out of the means.
        recall: [T, K, A] recall; -1 = undefined.
        freq_groups: three lists of class indices (into K): the rare, common and frequent classes.

    Returns:
        The `SUMMARY_KEYS` metrics as fractions; -1 where no entry is defined.
    """

    def mean_valid(s: np.ndarray) -> float:
        valid = s[s > -1]
        return float(np.mean(valid)) if len(valid) else -1.0

    def ap(iou_thr: Optional[float] = None, area: str = "all", group: Optional[int] = None) -> float:
        aidx = [AREA_LBL.index(area)]
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRS)[0]]
        s = s[:, :, freq_groups[group], aidx] if group is not None else s[:, :, :, aidx]
        return mean_valid(s)

    def ar(area: str = "all") -> float:
        return mean_valid(recall[:, :, [AREA_LBL.index(area)]])

    return {
        "AP": ap(),
        "AP50": ap(iou_thr=0.50),
        "AP75": ap(iou_thr=0.75),
        "APs": ap(area="small"),
        "APm": ap(area="medium"),
        "APl": ap(area="large"),
        "APr": ap(group=0),
        "APc": ap(group=1),
        "APf": ap(group=2),
        "AR": ar(),
        "ARs": ar("small"),
        "ARm": ar("medium"),
        "ARl": ar("large"),
    }


def per_class_ap(precision: np.ndarray) -> np.ndarray:
    """AP at IoU .50:.95 over all areas for each class (the per-class term of lvis-api's AP); NaN if undefined.

    Args:
        precision: [T, R, K, A] precision, -1 where undefined; area index 0 is "all".

    Returns:
        [K] float64 AP per class (a fraction).
    """
    s = precision[:, :, :, 0]
    out = np.full(s.shape[2], np.nan)
    for k in range(s.shape[2]):
        valid = s[:, :, k][s[:, :, k] > -1]
        if len(valid):
            out[k] = float(np.mean(valid))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Selection of the detections that lvis-api evaluates (vectorised over all detections).


def _stable_top(group: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k highest-scoring rows of each group; ties keep the earlier row (a stable sort, as sorted())."""
    n = len(score)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((np.arange(n), -score, group))  # by group, then score descending, then original position
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    keep = np.zeros(n, dtype=bool)
    keep[order[rank < k]] = True
    return keep


def select_detections(
    dets: Detections, gt: LVISGroundTruth, max_dets_per_image: int = 300, fixed_ap_k: Optional[int] = None
) -> Tuple[Detections, int]:
    """The detections lvis-api evaluates: the per-image (or Fixed AP per-class) cap, then the federated rule.

    Returns them in their original order, and the number kept after the cap (before the federated rule).
    """
    if fixed_ap_k is not None:
        keep = _stable_top(dets.cat_index, dets.score, fixed_ap_k)
    elif max_dets_per_image >= 0:
        keep = _stable_top(dets.img_index, dets.score, max_dets_per_image)
    else:
        keep = np.ones(len(dets), dtype=bool)
    n_capped = int(keep.sum())
    keys = gt.pair_keys(dets.img_index, dets.cat_index)
    listed = np.union1d(gt.pos_pairs, gt.neg_pairs)
    keep &= np.isin(keys, listed, assume_unique=False)
    return dets.subset(np.flatnonzero(keep)), n_capped


# ---------------------------------------------------------------------------------------------------------------
# Per-chunk evaluation (runs in the workers).

_SHARED: Dict[str, object] = {}  # set by the parent before forking the pool; read-only in the workers


@dataclass
class _Chunk:
    cat_lo: int
    cat_hi: int  # category indices [cat_lo, cat_hi)
    det_lo: int
    det_hi: int  # rows of the (category-sorted) detections


def _gt_rle(ann: dict, h: int, w: int):
    """lvis-api's `LVIS.ann_to_rle`: polygons and uncompressed RLE to compressed RLE (pycocotools)."""
    import pycocotools.mask as mask_utils

    segm = ann["segmentation"]
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, h, w)
    return segm


def _det_mask(segm, h: int, w: int, index: int) -> Tuple[dict, float]:
    """A result's mask as compressed RLE and its area, or LVISInputError naming the record."""
    import faster_coco_eval.mask_api_new_cpp as _mask  # validates RLE strings
    import pycocotools.mask as mask_utils

    try:
        rle = _gt_rle({"segmentation": segm}, h, w)
        _mask.area([dict(rle)])
        area = float(mask_utils.area(rle))
        if not 0 <= area <= h * w:
            raise ValueError(f"its area {area:.0f} exceeds the image's {h}x{w} pixels")
    except Exception as err:
        raise LVISInputError(
            f"results: record [{index}] field 'segmentation' does not decode ({err}); write masks with "
            f"pycocotools.mask.encode at the image's size (as Detectron2's instances_to_coco_json does)."
        ) from None
    return rle, area


def _groups(keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal values in a sorted array."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return starts, np.r_[starts[1:], len(keys)]


@gc_paused
def _evaluate_chunk(chunk: _Chunk) -> Tuple[int, int, np.ndarray, np.ndarray, Tuple[int, int]]:
    """Precision [T, R, k, A] and recall [T, k, A] of the chunk's k classes."""
    import faster_coco_eval.faster_eval_api_cpp as _C
    import faster_coco_eval.mask_api_new_cpp as _mask
    import pycocotools.mask as mask_utils  # lvis-api's IoU
    from faster_coco_eval.core.cocoeval import Params

    gt: LVISGroundTruth = _SHARED["gt"]  # type: ignore[assignment]
    dets: Detections = _SHARED["dets"]  # type: ignore[assignment]
    iou_type: str = _SHARED["iou_type"]  # type: ignore[assignment]
    max_det: int = _SHARED["max_det"]  # type: ignore[assignment]
    nel_pairs = gt.nel_pairs
    segm = iou_type == "segm"
    lo, hi = chunk.det_lo, chunk.det_hi
    img_ids, cat_ids, num_cats = gt.img_ids, gt.cat_ids, gt.num_cats

    # detections of the chunk (rows in original order within each class)
    d_img = dets.img_index[lo:hi]
    d_key = d_img * num_cats + dets.cat_index[lo:hi]
    d_score = dets.score[lo:hi]
    if segm:
        seg_col = dets.segmentation
        d_geo = seg_col.dicts(lo, hi) if isinstance(seg_col, RLEColumn) else list(seg_col[lo:hi])  # type: ignore
        hw = gt.img_hw[d_img]
        try:  # faster-coco-eval's area rejects malformed RLE strings (pycocotools decodes them to garbage)
            d_area = np.asarray(_mask.area(d_geo), dtype=np.float64) if d_geo else np.zeros(0)
            valid = bool(((d_area >= 0) & (d_area <= hw[:, 0] * hw[:, 1])).all())
        except Exception:
            valid = False
        if not valid or any(isinstance(g, list) for g in d_geo):  # polygons, or a bad mask to find
            d_area = np.zeros(len(d_geo))
            for j, g in enumerate(d_geo):
                d_geo[j], d_area[j] = _det_mask(g, int(hw[j, 0]), int(hw[j, 1]), int(dets.index[lo + j]))
    else:
        boxes = dets.bbox[lo:hi]
        d_area = boxes[:, 2] * boxes[:, 3]
    keep = np.flatnonzero(d_area > 0)  # lvis-api's get_ann_ids keeps 0 < area < inf
    d_mark = np.isin(d_key, nel_pairs)  # not exhaustively annotated: unmatched detections are ignored
    dt_ds = _C.Dataset()
    d_score_l, d_area_l, d_mark_l = d_score.tolist(), d_area.tolist(), d_mark.tolist()
    d_img_id = img_ids[d_img].tolist()
    d_cat_id = cat_ids[dets.cat_index[lo:hi]].tolist()
    records = []
    for j in keep.tolist():
        rec = {"id": j + 1, "score": d_score_l[j], "area": d_area_l[j], "iscrowd": 0, "lvis_mark": d_mark_l[j]}
        dt_ds.append_ref(d_img_id[j], d_cat_id[j], rec)
        records.append(rec)
    # pairs (image, class): rows sorted by score, ties in original order (lvis-api's mergesort)
    kk = d_key[keep]
    order = keep[np.lexsort((keep, -d_score[keep], kk))]
    dt_start, dt_end = _groups(d_key[order])
    dt_pairs = dict(zip(d_key[order][dt_start].tolist(), zip(dt_start.tolist(), dt_end.tolist())))

    # ground truth of the chunk's classes
    gt_ds = _C.Dataset()
    gt_geo: Dict[int, list] = {}
    for ci in range(chunk.cat_lo, chunk.cat_hi):
        anns = gt.anns_by_cat[ci]
        ann_img = np.searchsorted(img_ids, np.array([a["image_id"] for a in anns], dtype=np.int64)).tolist()
        for ann, ii in zip(anns, ann_img):
            key = ii * num_cats + ci
            rec = {"id": ann["id"], "area": float(ann["area"]), "iscrowd": 0, "ignore": 0}  # lvis-api: no crowd
            gt_ds.append_ref(ann["image_id"], ann["category_id"], rec)
            records.append(rec)
            if segm:
                if "segmentation" not in ann:
                    raise LVISInputError(
                        f"ground truth {gt.source}: annotation id {ann['id']} has no 'segmentation'; segm "
                        f"evaluation needs masks (or evaluate bbox only)."
                    )
                geo = _gt_rle(ann, int(gt.img_hw[ii, 0]), int(gt.img_hw[ii, 1]))
            else:
                geo = ann["bbox"]
            gt_geo.setdefault(key, []).append(geo)

    # per class, the images where it has ground truth or detections
    all_keys = np.union1d(np.fromiter(gt_geo.keys(), dtype=np.int64, count=len(gt_geo)), kk)
    all_keys = all_keys[np.lexsort((all_keys // num_cats, all_keys % num_cats))]  # by class, then image
    key_cat = all_keys % num_cats
    c_start, c_end = _groups(key_cat)
    params = Params(iouType=iou_type)
    params.maxDets = [max_det]
    params.areaRng = AREA_RNG
    params.areaRngLbl = AREA_LBL
    params.useCats = 1
    k = chunk.cat_hi - chunk.cat_lo
    precision = -np.ones((len(IOU_THRS), len(REC_THRS), k, len(AREA_RNG)))
    recall = -np.ones((len(IOU_THRS), k, len(AREA_RNG)))
    empty: list = []
    for s, e in zip(c_start.tolist(), c_end.tolist()):
        keys = all_keys[s:e].tolist()
        ci = keys[0] % num_cats
        cat_id = int(cat_ids[ci])
        eval_imgs = img_ids[all_keys[s:e] // num_cats].tolist()  # sorted by image
        ious: List[list] = []
        for key in keys:
            g = gt_geo.get(key)
            rng = dt_pairs.get(key)
            if g is None or rng is None:
                ious.append([empty])
                continue
            rows = order[rng[0] : rng[1]][:max_det]
            dg = [d_geo[r] for r in rows.tolist()] if segm else boxes[rows]
            ious.append([mask_utils.iou(dg, g, [0] * len(g))])
        params.imgIds = eval_imgs
        params.catIds = [cat_id]
        out = _C.COCOevalEvaluateAccumulate(params, ious, gt_ds, dt_ds, eval_imgs, [cat_id], True)
        precision[:, :, ci - chunk.cat_lo, :] = np.asarray(out["precision"])[:, :, 0, :, 0]
        recall[:, ci - chunk.cat_lo, :] = np.asarray(out["recall"])[:, 0, :, 0]
    return chunk.cat_lo, chunk.cat_hi, precision, recall, (os.getpid(), _peak_rss_bytes())


def _peak_rss_bytes() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _make_chunks(cat_index_sorted: np.ndarray, gt: LVISGroundTruth, num_chunks: int) -> List[_Chunk]:
    """Contiguous class ranges with about equal work (detections + ground truth), each at least one class."""
    num_cats = gt.num_cats
    det_count = np.bincount(cat_index_sorted, minlength=num_cats)
    work = det_count + gt.instance_counts() + 1
    cum = np.cumsum(work)
    bounds = [0]
    for t in range(1, num_chunks):
        b = int(np.searchsorted(cum, cum[-1] * t / num_chunks))
        if b > bounds[-1]:
            bounds.append(b)
    if bounds[-1] != num_cats:
        bounds.append(num_cats)
    det_start = np.r_[0, np.cumsum(det_count)]
    return [_Chunk(lo, hi, int(det_start[lo]), int(det_start[hi])) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _freq_groups(gt: LVISGroundTruth) -> List[List[int]]:
    return [np.flatnonzero(gt.frequency == lbl).tolist() for lbl in FREQ_LBL]


@gc_paused
def evaluate_detections(
    gt: LVISGroundTruth,
    dets: Detections,
    iou_type: str = "bbox",
    *,
    fixed_ap: bool = False,
    fixed_ap_k: int = FIXED_AP_DEFAULT_K,
    max_dets_per_image: int = 300,
    workers: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    stats: Optional[Dict[str, float]] = None,
) -> LVISEvalResult:
    """Evaluate checked detections (see `evaluate_lvis` for the arguments).

    Args:
        gt: the loaded ground truth (`load_ground_truth`).
        dets: the loaded detections (`load_detections`), with the boxes or masks `iou_type` needs.
        iou_type: "bbox" or "segm".
        fixed_ap: Fixed AP instead of the per-image cap.
        fixed_ap_k: detections kept per class for Fixed AP.
        max_dets_per_image: the per-image cap of standard AP.
        workers: processes; None = `default_workers()`, 1 = in this process.
        progress: optional callback `progress(chunks_done, chunks_total)`.
        stats: optional dict filled with counts: detections, after_cap, evaluated, chunks and
            worker_peak_rss_sum.

    Returns:
        The result; its `timings` has "select", "evaluate" and "summarize".
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if iou_type == "segm" and dets.segmentation is None:
        raise LVISInputError("results have no 'segmentation'; evaluate iou type bbox only, or save masks.")
    if iou_type == "bbox" and dets.bbox is None:
        raise LVISInputError("results have no 'bbox'; evaluate iou type segm only, or save boxes.")
    t0 = time.perf_counter()
    selected, n_capped = select_detections(dets, gt, max_dets_per_image, fixed_ap_k if fixed_ap else None)
    if fixed_ap:
        pair_counts = np.unique(gt.pair_keys(selected.img_index, selected.cat_index), return_counts=True)[1]
        max_det = int(pair_counts.max()) if len(pair_counts) else 1
    else:
        max_det = max(max_dets_per_image, 1)
    order = np.argsort(selected.cat_index, kind="stable")
    selected = selected.subset(order)
    workers = default_workers() if workers is None else max(int(workers), 1)
    chunks = _make_chunks(selected.cat_index, gt, num_chunks=max(4 * workers, 1) if workers > 1 else 8)
    num_cats = gt.num_cats
    precision = -np.ones((len(IOU_THRS), len(REC_THRS), num_cats, len(AREA_RNG)))
    recall = -np.ones((len(IOU_THRS), num_cats, len(AREA_RNG)))
    t1 = time.perf_counter()
    _SHARED.update(
        gt=gt,
        dets=selected,
        iou_type=iou_type,
        max_det=max_det,
    )
    # fork: the workers see the parent's columns without a copy and build the records of their chunks only. A
    # ProcessPoolExecutor, not multiprocessing.Pool: a chunk that raises (a bad mask) or a worker that dies surfaces
    # as an error, and shutting down after it cannot hang (Pool.terminate() hung the test suite after a worker error).
    executor = (
        ProcessPoolExecutor(min(workers, len(chunks)), mp_context=mp.get_context("fork")) if workers > 1 else None
    )
    rss_by_pid: Dict[int, int] = {}
    try:
        if executor is None:
            results = map(_evaluate_chunk, chunks)
        else:
            results = (f.result() for f in as_completed([executor.submit(_evaluate_chunk, c) for c in chunks]))
        for done, (lo, hi, p, r, (pid, rss)) in enumerate(results, 1):
            precision[:, :, lo:hi, :] = p
            recall[:, lo:hi, :] = r
            rss_by_pid[pid] = max(rss, rss_by_pid.get(pid, 0))
            if progress is not None:
                progress(done, len(chunks))
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        _SHARED.clear()
    worker_rss = [v for pid, v in rss_by_pid.items() if pid != os.getpid()]
    t2 = time.perf_counter()
    if stats is not None:
        stats.update(
            detections=len(dets), after_cap=n_capped, evaluated=len(selected), chunks=len(chunks),
            worker_peak_rss_sum=sum(worker_rss),
        )  # fmt: skip
    summary = summarize_lvis(precision, recall, _freq_groups(gt))
    return LVISEvalResult(
        iou_type=iou_type,
        summary=summary,
        per_class_ap=per_class_ap(precision),
        cat_ids=gt.cat_ids.copy(),
        precision=precision,
        recall=recall,
        fixed_ap=fixed_ap,
        max_dets_per_image=max_dets_per_image,
        timings={"select": t1 - t0, "evaluate": t2 - t1, "summarize": time.perf_counter() - t2},
    )


def evaluate_lvis(
    gt: JsonLike | LVISGroundTruth,
    results: JsonLike | Detections,
    iou_types: Sequence[str] = ("bbox",),
    *,
    fixed_ap: bool = False,
    fixed_ap_k: int = FIXED_AP_DEFAULT_K,
    max_dets_per_image: int = 300,
    workers: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, LVISEvalResult]:
    """LVIS AP of `results` on `gt` for each iou type ('bbox', 'segm'), with lvis-api 0.5.3's numbers.

    Raises LVISInputError naming the first bad record.

    Args:
        gt: an LVIS-format json path or dict, or a loaded `LVISGroundTruth`.
        results: a results json path or list (Detectron2's `lvis_instances_results.json`), or loaded `Detections`.
        iou_types: "bbox" and/or "segm".
        fixed_ap: Fixed AP (top `fixed_ap_k` detections per class over the dataset, no per-image cap) instead of
            the per-image cap `max_dets_per_image`.
        fixed_ap_k: detections kept per class for Fixed AP.
        max_dets_per_image: the per-image cap of standard AP.
        workers: processes (default: the CPUs).
        progress: optional callback `progress(chunks_done, chunks_total)`, per iou type.

    Returns:
        {iou_type: result}.
    """
    gt = gt if isinstance(gt, LVISGroundTruth) else load_ground_truth(gt)
    if not isinstance(results, Detections):
        results = load_detections(results, gt, need_bbox="bbox" in iou_types, need_segm="segm" in iou_types)
    return {
        t: evaluate_detections(
            gt,
            results,
            t,
            fixed_ap=fixed_ap,
            fixed_ap_k=fixed_ap_k,
            max_dets_per_image=max_dets_per_image,
            workers=workers,
            progress=progress,
        )  # fmt: skip
        for t in iou_types
    }
