"""LVIS AP with lvis-api 0.5.3's exact numbers, sharded by class over processes.

lvis-api (`lvis.LVISEval`) is the reference; this module applies its protocol (in this one place):

1. per image, keep the 300 highest-scoring detections (a stable sort, as `lvis.LVISResults`); Fixed AP (Dave et al.
   2021, arXiv 2102.01066) instead keeps the K (10,000) highest-scoring detections of each class over the dataset
   and no per-image cap;
2. drop detections with area <= 0 (lvis-api's `get_ann_ids` keeps 0 < area < inf) and detections of a class that is
   neither annotated in the image nor in its `neg_category_ids` (the federated rule; lvis-api skips them too);
3. an unmatched detection of a class in the image's `not_exhaustive_category_ids` is ignored, as is an unmatched one
   outside the area range;
4. for segm, a detection's area is its mask area (Detectron2 drops the result's box before LVISResults).

The selection, pairing and box IoUs are array operations over all detections of a chunk of classes (boxes:
pycocotools' bbIou arithmetic, vectorised; masks: `masks.py`, pycocotools' arithmetic on runs decoded once, only for
entries that can reach IoU 0.5); lvis-api's greedy matching per (image, class) pair and its accumulation per class
(cumulative sums, right-to-left maximum, recall-threshold look-up) are its own loops in C (`_matching.c`). Each step
repeats lvis-api's floating-point operations, so the numbers are its numbers (tests/test_eval_fast_lvis.py: every
summary value and per-class AP to 1e-9). AP of one class depends only on that class's ground truth and detections,
so classes are split into chunks that the processes claim in turn. The summary (AP, AP50, AP75, APs/m/l, APr/c/f,
AR) is lvis-api's `_summarize` over the reassembled precision/recall arrays, so even the order of the floating-point
sums is lvis-api's.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._native import _matching
from .gc_pause import gc_paused
from .inputs import (
    Detections,
    JsonLike,
    LVISGroundTruth,
    LVISInputError,
    load_detections,
    load_ground_truth,
    load_inputs,
)  # fmt: skip
from .masks import detection_masks, ground_truth_masks, mask_iou_entries

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
    rows = np.ascontiguousarray(np.moveaxis(s, 2, 0)).reshape(s.shape[2], -1)  # [K, T * R], each in (t, r) order
    valid = rows > -1
    full = valid.all(axis=1)  # lvis-api defines a class's whole [T, R] block or none of it
    out[full] = rows[full].mean(axis=1)  # the same pairwise sum as np.mean of each row alone
    for k in np.flatnonzero(valid.any(axis=1) & ~full).tolist():
        out[k] = float(np.mean(rows[k][valid[k]]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Selection of the detections that lvis-api evaluates (vectorised over all detections).


def _stable_top(group: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k highest-scoring rows of each group; ties keep the earlier row (a stable sort, as sorted())."""
    n = len(score)
    if n == 0:
        return np.zeros(0, dtype=bool)
    counts = np.bincount(group)
    if counts.max() <= k:  # Detectron2 already caps at 300 per image: nothing to sort
        return np.ones(n, dtype=bool)
    over = counts[group] > k
    if not over.all():  # rank only the groups above the cap
        keep = np.ones(n, dtype=bool)
        rows = np.flatnonzero(over)
        keep[rows] = _stable_top(group[rows], score[rows], k)
        return keep
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


def _groups(keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal values in a sorted array."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return starts, np.r_[starts[1:], len(keys)]


_THRS = np.minimum(IOU_THRS, 1 - 1e-10)  # lvis-api matches at min(threshold, 1 - 1e-10)
_AREA_LO = np.array([a[0] for a in AREA_RNG], dtype=np.float64)
_AREA_HI = np.array([a[1] for a in AREA_RNG], dtype=np.float64)


def _box_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """pycocotools' bbIou (iscrowd 0) on row pairs, with the same double operations in the same order."""
    da = d[:, 2] * d[:, 3]
    ga = g[:, 2] * g[:, 3]
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    ok = (w > 0) & (h > 0)
    out = np.zeros(len(d))
    out[ok] = inter[ok] / (da[ok] + ga[ok] - inter[ok])
    return out


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., n_i - 1 for each count n_i, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


@gc_paused
def _evaluate_chunk(chunk: _Chunk) -> Tuple[int, int, np.ndarray, np.ndarray, Tuple[int, int]]:
    """Precision [T, R, k, A] and recall [T, k, A] of the chunk's k classes."""
    gt: LVISGroundTruth = _SHARED["gt"]  # type: ignore[assignment]
    dets: Detections = _SHARED["dets"]  # type: ignore[assignment]
    iou_type: str = _SHARED["iou_type"]  # type: ignore[assignment]
    segm = iou_type == "segm"
    lo, hi = chunk.det_lo, chunk.det_hi
    num_cats = gt.num_cats

    d_img = dets.img_index[lo:hi]
    d_cat = dets.cat_index[lo:hi]
    d_score = dets.score[lo:hi]
    if segm:
        d_masks = detection_masks(dets.segmentation, slice(lo, hi), gt.img_hw[d_img], dets.index[lo:hi])
        d_area = d_masks.area
    else:
        boxes = dets.bbox[lo:hi]
        d_area = boxes[:, 2] * boxes[:, 3]
    keep = np.flatnonzero(d_area > 0)  # lvis-api's get_ann_ids keeps 0 < area < inf
    # lvis-api's accumulate order: class, score descending, then image (images are concatenated in id order, each
    # already in score order), then file order (stable sorts throughout)
    order = keep[np.lexsort((keep, d_img[keep], -d_score[keep], d_cat[keep]))]
    o_key = d_img[order] * num_cats + d_cat[order]
    o_area = d_area[order]
    area_ignored = (o_area[:, None] < _AREA_LO) | (o_area[:, None] > _AREA_HI) | np.isin(o_key, gt.nel_pairs)[:, None]

    # ground truth of the chunk's classes
    cols = gt.columns()
    g_lo, g_hi = int(cols.cat_start[chunk.cat_lo]), int(cols.cat_start[chunk.cat_hi])
    g_key = cols.img_index[g_lo:g_hi] * num_cats + cols.cat_index[g_lo:g_hi]
    g_area = cols.area[g_lo:g_hi]

    # (image, class) pairs with both detections and ground truth: the only ones where anything can match
    by_pair = np.argsort(o_key, kind="stable")  # score order kept within a pair
    d_start, d_end = _groups(o_key[by_pair])
    g_by_pair = np.argsort(g_key, kind="stable")  # json order kept within a pair
    gs, ge = _groups(g_key[g_by_pair])
    common, ia, ib = np.intersect1d(
        o_key[by_pair][d_start], g_key[g_by_pair][gs], assume_unique=True, return_indices=True
    )
    pair_d = d_end[ia] - d_start[ia]
    pair_g = ge[ib] - gs[ib]
    det_pair = np.repeat(np.arange(len(ia)), pair_d)
    det_rank = _ranks(pair_d)
    det_rows = by_pair[np.repeat(d_start[ia], pair_d) + det_rank]  # into `order`
    pair_gstart = np.cumsum(pair_g) - pair_g
    gt_rows = g_by_pair[np.repeat(gs[ib], pair_g) + _ranks(pair_g)]  # pair-major, into the chunk's ground truth
    g_det = pair_g[det_pair]
    e_start = np.cumsum(g_det) - g_det
    e_pos = np.repeat(pair_gstart[det_pair], g_det) + _ranks(g_det)  # each entry's ground truth, into gt_rows
    if segm:
        g_masks = ground_truth_masks([cols.anns[g_lo + r] for r in gt_rows.tolist()], gt,
                                     cols.img_index[g_lo:g_hi][gt_rows])  # fmt: skip
        iou = mask_iou_entries(d_masks, order[det_rows], g_masks, np.repeat(np.arange(len(det_rows)), g_det), e_pos,
                               float(_THRS.min()))  # fmt: skip
    else:
        iou = _box_iou(boxes[order[np.repeat(det_rows, g_det)]], cols.bbox[g_lo:g_hi][gt_rows[e_pos]])
    gt_ig = (g_area[gt_rows, None] < _AREA_LO) | (g_area[gt_rows, None] > _AREA_HI)
    states = np.empty((len(det_rows), len(AREA_RNG), len(_THRS)), dtype=np.int8)
    _matching.match(np.ascontiguousarray(iou, dtype=np.float64), e_start, det_pair, pair_g, pair_gstart,
          np.ascontiguousarray(gt_ig).view(np.uint8), (cols.ann_id[g_lo:g_hi][gt_rows] == 0).view(np.uint8), _THRS,
          states)  # fmt: skip
    state = np.zeros((len(order), len(AREA_RNG), len(_THRS)), dtype=np.int8)
    state[det_rows] = states

    # accumulate class by class
    g_cat = cols.cat_index[g_lo:g_hi]
    k = chunk.cat_hi - chunk.cat_lo
    in_range = [(g_area >= a0) & (g_area <= a1) for a0, a1 in AREA_RNG]  # lvis-api's not-ignored ground truth
    num_gt = np.stack([np.bincount(g_cat - chunk.cat_lo, weights=w, minlength=k) for w in in_range], axis=1)
    precision = -np.ones((len(IOU_THRS), len(REC_THRS), k, len(AREA_RNG)))
    recall = -np.ones((len(IOU_THRS), k, len(AREA_RNG)))
    o_cat = d_cat[order]
    c_bounds = np.searchsorted(o_cat, np.arange(chunk.cat_lo, chunk.cat_hi + 1))
    _matching.accumulate(state, np.ascontiguousarray(area_ignored).view(np.uint8), c_bounds.astype(np.int64),
               np.ascontiguousarray(num_gt, dtype=np.float64), REC_THRS, precision, recall)  # fmt: skip
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


def _claim_chunks() -> Iterator[tuple]:
    """`_evaluate_chunk` of the chunks this process claims from the shared counter, one at a time, until none is
    left: the processes balance the work between them, whatever each chunk costs."""
    chunks: List[_Chunk] = _SHARED["chunks"]  # type: ignore[assignment]
    counter, lock = _SHARED["next_chunk"], _SHARED["lock"]
    while True:
        with lock:  # type: ignore[attr-defined]
            i = counter.value  # type: ignore[attr-defined]
            counter.value = i + 1  # type: ignore[attr-defined]
        if i >= len(chunks):
            return
        yield _evaluate_chunk(chunks[i])


def _claimed_by_child() -> List[tuple]:
    return list(_claim_chunks())


def _share_chunks(executor: ProcessPoolExecutor, children: int) -> Iterator[tuple]:
    """The chunks' results: this process's as it finishes each (the forked children claim from the same counter),
    then the children's."""
    futures = [executor.submit(_claimed_by_child) for _ in range(children)]
    try:
        yield from _claim_chunks()
    except BaseException:
        _SHARED["next_chunk"].value = len(_SHARED["chunks"])  # type: ignore[attr-defined]  # the children stop
        raise
    for f in as_completed(futures):
        yield from f.result()


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
    order = np.argsort(selected.cat_index, kind="stable")
    selected = selected.subset(order)
    workers = default_workers() if workers is None else max(int(workers), 1)
    chunks = _make_chunks(selected.cat_index, gt, num_chunks=8 * workers if workers > 1 else 8)
    num_cats = gt.num_cats
    precision = -np.ones((len(IOU_THRS), len(REC_THRS), num_cats, len(AREA_RNG)))
    recall = -np.ones((len(IOU_THRS), num_cats, len(AREA_RNG)))
    t1 = time.perf_counter()
    _SHARED.update(
        gt=gt,
        dets=selected,
        iou_type=iou_type,
    )
    # fork: the workers see the parent's columns without a copy and build the records of their chunks only. A
    # ProcessPoolExecutor, not multiprocessing.Pool: a chunk that raises (a bad mask) or a worker that dies surfaces
    # as an error, and shutting down after it cannot hang (Pool.terminate() hung the test suite after a worker error).
    # This process is one of the workers; every worker claims the next chunk from a shared counter when it is free.
    children = min(workers, len(chunks)) - 1
    gt.columns()  # built once here, not in every worker
    ctx = mp.get_context("fork")
    _SHARED.update(chunks=chunks, next_chunk=ctx.RawValue("l", 0), lock=ctx.Lock())
    executor = ProcessPoolExecutor(children, mp_context=ctx) if children > 0 else None
    rss_by_pid: Dict[int, int] = {}
    try:
        if executor is None:
            results = map(_evaluate_chunk, chunks)
        else:
            results = _share_chunks(executor, children)
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
    workers = default_workers() if workers is None else max(int(workers), 1)
    need = {"need_bbox": "bbox" in iou_types, "need_segm": "segm" in iou_types}
    if isinstance(results, Detections):
        gt = gt if isinstance(gt, LVISGroundTruth) else load_ground_truth(gt)
    elif isinstance(gt, LVISGroundTruth):
        results = load_detections(results, gt, **need)
    else:  # with more than one worker, the results file is read while the ground truth loads
        gt, results = load_inputs(gt, results, **need, concurrent=workers > 1)
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
