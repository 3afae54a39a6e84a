"""LVIS AP with lvis-api 0.5.3's exact numbers, in numpy, sharded by class over processes.

lvis-api (`lvis.LVISEval`) is the reference; this module applies its protocol (in this one place):

1. per image, keep the 300 highest-scoring detections (a stable sort, as `lvis.LVISResults`); Fixed AP (Dave et al.
   2021, arXiv 2102.01066) instead keeps the K (10,000) highest-scoring detections of each class over the dataset
   and no per-image cap;
2. drop detections with area <= 0 (lvis-api's `get_ann_ids` keeps 0 < area < inf) and detections of a class that is
   neither annotated in the image nor in its `neg_category_ids` (the federated rule; lvis-api skips them too);
3. an unmatched detection of a class in the image's `not_exhaustive_category_ids` is ignored, as is an unmatched one
   outside the area range;
4. for segm, a detection's area is its mask area (Detectron2 drops the result's box before LVISResults).

The work is array operations over all detections of a chunk of classes, not a record per detection: IoUs (boxes:
pycocotools' bbIou arithmetic, vectorised; masks: pycocotools' rleIou, only for entries that can reach IoU 0.5),
lvis-api's greedy matching stepped one detection rank at a time over all (image, class) pairs at once, and its
accumulation (cumulative sums, right-to-left maximum, recall-threshold look-up) per class. Each step repeats lvis-api's
floating-point operations, so the numbers are its numbers (tests/test_eval_fast_lvis.py: every summary value and
per-class AP to 1e-9). AP of one class depends only on that class's ground truth and detections, so classes are split
into chunks evaluated in a process pool. The summary (AP, AP50, AP75, APs/m/l, APr/c/f, AR) is lvis-api's
`_summarize` over the reassembled precision/recall arrays, so even the order of the floating-point sums is lvis-api's.
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


_THRS = np.minimum(IOU_THRS, 1 - 1e-10)  # lvis-api matches at min(threshold, 1 - 1e-10)
_AREA_LO = np.array([a[0] for a in AREA_RNG], dtype=np.float64)
_AREA_HI = np.array([a[1] for a in AREA_RNG], dtype=np.float64)
# Match state of a detection at one (area range, IoU threshold), as lvis-api's evaluate_img leaves dt_m and dt_ig:
_UNMATCHED = 0  # dt_m == 0 (no match, or matched to a ground truth whose id is 0): ignored only by the area/nel rule
_TP = 1  # matched to a ground truth that is not ignored in this area range
_IGNORED = 2  # matched to a ground truth that is ignored in this area range


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


def _match(
    iou: np.ndarray, e_start: np.ndarray, det_pair: np.ndarray, det_rank: np.ndarray, pair_g: np.ndarray,
    gt_ig: np.ndarray, gt_id_zero: np.ndarray, gt_start: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """lvis-api's greedy matching, all (image, class) pairs at once: [num_dets, A, T] match states.

    Per pair, per area range and IoU threshold, each detection in score order takes, among the ground truth not yet
    taken with IoU >= the threshold, the one of highest IoU (the last such in the ground truth's order), looking at
    the ground truth ignored in that area range only if no other qualifies: the loop of lvis-api's evaluate_img.
    Pairs are grouped by their ground-truth count (a power of two apart) and stepped one detection rank at a time.

    Args:
        iou: flat IoU entries; detection i's row (its pair's ground truth in order) starts at e_start[i].
        e_start: [D] start of each detection's row.
        det_pair: [D] pair index of each detection (detections of a pair are in score order).
        det_rank: [D] position of each detection within its pair.
        pair_g: [P] ground-truth count of each pair.
        gt_ig: [total ground truth, A] ignored in each area range (pair-major, json order within a pair).
        gt_id_zero: [total ground truth] annotation id is 0 (lvis-api then stores the match as no match).
        gt_start: [P] first ground-truth row of each pair.

    Returns:
        [D, A, T] int8 states (_UNMATCHED, _TP, _IGNORED).
    """
    num_a, num_t = len(AREA_RNG), len(_THRS)
    out = np.zeros((len(det_pair), num_a, num_t), dtype=np.int8)
    if len(det_pair) == 0:
        return out
    g_det = pair_g[det_pair]
    # a detection with IoU < 0.5 against every ground truth of its pair matches nothing and changes nothing
    best = np.maximum.reduceat(iou, e_start) if len(iou) else np.zeros(0)
    cand = np.flatnonzero(best >= _THRS.min())
    if len(cand) == 0:
        return out
    # rank among the pair's candidates: the detections before it that could not match change no state
    c_pair = det_pair[cand]
    first = np.r_[True, c_pair[1:] != c_pair[:-1]]
    c_rank = np.arange(len(cand)) - np.maximum.accumulate(np.where(first, np.arange(len(cand)), 0))
    bucket = np.ceil(np.log2(g_det[cand])).astype(np.int64)
    thr = _THRS[None, None, :, None]
    for b in np.unique(bucket).tolist():
        rows = cand[bucket == b]  # detections of this bucket (pair-major, score order)
        ranks = c_rank[bucket == b]
        pairs, local_pair = np.unique(det_pair[rows], return_inverse=True)
        gb = int(pair_g[pairs].max())
        gcount = pair_g[det_pair[rows]]
        col = _ranks(gcount)
        rr = np.repeat(np.arange(len(rows)), gcount)
        io = np.full((len(rows), gb), -1.0)
        io[rr, col] = iou[np.repeat(e_start[rows], gcount) + col]
        pcount = pair_g[pairs]
        pc = _ranks(pcount)
        prow = np.repeat(np.arange(len(pairs)), pcount)
        gsrc = np.repeat(gt_start[pairs], pcount) + pc
        ig = np.zeros((len(pairs), num_a, gb), dtype=bool)
        ig[prow, :, pc] = gt_ig[gsrc]
        zero = np.zeros((len(pairs), gb), dtype=bool)
        zero[prow, pc] = gt_id_zero[gsrc]
        taken = np.zeros((len(pairs), num_a, num_t, gb), dtype=bool)
        by_rank = np.argsort(ranks, kind="stable")
        r_start, r_end = _groups(ranks[by_rank])
        for s, e in zip(r_start.tolist(), r_end.tolist()):
            sel = by_rank[s:e]
            p = local_pair[sel]
            v = io[sel][:, None, None, :]  # [n, 1, 1, G]
            elig = ~taken[p] & (v >= thr)  # [n, A, T, G]
            igp = ig[p][:, :, None, :]
            tier1 = elig & ~igp
            pick = np.where(tier1.any(-1, keepdims=True), tier1, elig)  # not ignored first, else the ignored
            hit = pick.any(-1)  # [n, A, T]
            vals = np.where(pick, v, -1.0)
            m = gb - 1 - np.argmax(vals[..., ::-1], axis=-1)  # the last of the highest IoU
            n_i, a_i, t_i = np.nonzero(hit)
            mg = m[n_i, a_i, t_i]
            taken[p[n_i], a_i, t_i, mg] = True
            state = np.where(ig[p[n_i], a_i, mg], _IGNORED, np.where(zero[p[n_i], mg], _UNMATCHED, _TP))
            out[rows[sel[n_i]], a_i, t_i] = state
    return out


def _gt_rles(anns: List[dict], gt: LVISGroundTruth, img_index: np.ndarray) -> List[dict]:
    """lvis-api's `ann_to_rle` of each annotation, polygons rasterised image by image (one pycocotools call each).

    An annotation whose first polygon has more than 4 numbers is rasterised polygon by polygon and merged, as
    `frPyObjects` + `merge` do for it alone; any other (uncompressed RLE, RLE, short first polygon) goes alone.
    """
    import pycocotools.mask as mask_utils

    out: List[Optional[dict]] = [None] * len(anns)
    batch: Dict[int, List[int]] = {}
    for j, ann in enumerate(anns):
        segm = ann.get("segmentation")
        if segm is None:
            raise LVISInputError(
                f"ground truth {gt.source}: annotation id {ann['id']} has no 'segmentation'; segm evaluation needs "
                f"masks (or evaluate bbox only)."
            )
        if isinstance(segm, list) and segm and isinstance(segm[0], list) and len(segm[0]) > 4:
            batch.setdefault(int(img_index[j]), []).append(j)
        else:
            out[j] = _gt_rle(ann, int(gt.img_hw[img_index[j], 0]), int(gt.img_hw[img_index[j], 1]))
    for ii, js in batch.items():
        h, w = int(gt.img_hw[ii, 0]), int(gt.img_hw[ii, 1])
        polys = [p for j in js for p in anns[j]["segmentation"]]
        rles = mask_utils.frPyObjects(polys, h, w)
        k = 0
        for j in js:
            n = len(anns[j]["segmentation"])
            out[j] = rles[k] if n == 1 else mask_utils.merge(rles[k : k + n])
            k += n
    return out  # type: ignore[return-value]


_RLE_CHARS = bytes(range(48, 112))  # pycocotools' compressed RLE alphabet: 6 bits per character, offset by 48


_AREA_BATCH = 255  # pycocotools' area() sizes its result via np.array((n,), dtype=uint8): NumPy 2 raises for n > 255


def _areas(rles: List[dict]) -> np.ndarray:
    """pycocotools' mask areas of compressed RLE dicts, in batches that its NumPy 2 bug allows."""
    import pycocotools.mask as mask_utils

    parts = [mask_utils.area(rles[i : i + _AREA_BATCH]) for i in range(0, len(rles), _AREA_BATCH)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def _rle_areas(geo: List[dict], hw: np.ndarray) -> Tuple[np.ndarray, bool]:
    """Mask areas of compressed RLE dicts (pycocotools), and whether every mask is well formed: counts strings of
    the RLE alphabet whose last character closes its number, and an area within the image. False means: use the
    slow path (`_det_mask`), which converts polygons and uncompressed RLE and names a bad record."""

    if not geo:
        return np.zeros(0), True
    try:
        counts = [g["counts"] for g in geo]
        if not all(isinstance(c, bytes) for c in counts):
            counts = [c.encode() if isinstance(c, str) else c for c in counts]
        text = b"".join(counts)
        if text.translate(None, _RLE_CHARS) or any(c and (c[-1] - 48) & 0x20 for c in counts):
            return np.zeros(len(geo)), False  # a character outside the alphabet, or a number cut off
        area = _areas(geo)
    except (TypeError, KeyError, AttributeError, ValueError):
        return np.zeros(len(geo)), False
    return area, bool((area <= hw[:, 0] * hw[:, 1]).all())


def _mask_iou(
    dgeo: List[dict], d_area: np.ndarray, g_rle: List[dict], det_pair: np.ndarray, pair_g: np.ndarray,
    pair_gstart: np.ndarray, pair_img: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Mask IoU entries (each detection against its pair's ground truth, pair-major); exact where it can be >= 0.5.

    Only an IoU of at least 0.5 (the lowest threshold) can match, so an entry whose upper bound
    min(area_d, area_g, box intersection) / max(area_d, area_g) is below 0.5 is set to 0 without decoding the
    masks against each other (rounding is monotone: the computed IoU is at most the computed bound). The rest get
    pycocotools' rleIou, one call per image on the masks that have such entries.
    """
    import pycocotools.mask as mask_utils

    g_det = pair_g[det_pair]
    e_det = np.repeat(np.arange(len(dgeo)), g_det)
    e_gt = np.repeat(pair_gstart[det_pair], g_det) + _ranks(g_det)
    out = np.zeros(len(e_det))
    if len(e_det) == 0:
        return out
    db, gb = mask_utils.toBbox(dgeo), mask_utils.toBbox(g_rle)
    g_area = _areas(g_rle)
    d, g = db[e_det], gb[e_gt]
    w = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    a_d, a_g = d_area[e_det], g_area[e_gt]
    bound = np.minimum(np.minimum(a_d, a_g), np.clip(w, 0, None) * np.clip(h, 0, None)) / np.maximum(a_d, a_g)
    live = np.flatnonzero(bound >= _THRS.min())
    if len(live) == 0:
        return out
    # the masks with live entries, grouped by image (detections and ground truth are pair-major, pairs by image)
    dset, drow = np.unique(e_det[live], return_inverse=True)
    gset, gcol = np.unique(e_gt[live], return_inverse=True)
    gt_pair = np.repeat(np.arange(len(pair_g)), pair_g)
    e_bounds = zip(*_groups(pair_img[det_pair[e_det[live]]]))
    d_bounds = zip(*_groups(pair_img[det_pair[dset]]))
    g_bounds = zip(*_groups(pair_img[gt_pair[gset]]))
    d_sub = [dgeo[j] for j in dset.tolist()]
    g_sub = [g_rle[j] for j in gset.tolist()]
    for (s, e), (d0, d1), (g0, g1) in zip(e_bounds, d_bounds, g_bounds):
        m = np.asarray(mask_utils.iou(d_sub[d0:d1], g_sub[g0:g1], [0] * (g1 - g0)))
        out[live[s:e]] = m[drow[s:e] - d0, gcol[s:e] - g0]
    return out


def _accumulate_class(state: np.ndarray, area_ignored: np.ndarray, num_gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """lvis-api's accumulate for one class: precision [T, R, A] and recall [T, A] (-1 where num_gt is 0).

    Args:
        state: [n, A, T] match states of the class's detections in lvis-api's order (score descending; ties by
            image, then file order).
        area_ignored: [n, A] detection outside the area range or of a not-exhaustive class in its image (ignored
            when unmatched).
        num_gt: [A] ground truth not ignored in each area range.
    """
    num_a, num_t, num_r = len(AREA_RNG), len(_THRS), len(REC_THRS)
    precision = -np.ones((num_t, num_r, num_a))
    recall = -np.ones((num_t, num_a))
    areas = np.flatnonzero(num_gt > 0)
    if len(areas) == 0:
        return precision, recall
    n = state.shape[0]
    if n == 0:
        precision[:, :, areas] = 0.0
        recall[:, areas] = 0.0
        return precision, recall
    s = state[:, areas, :].transpose(1, 2, 0)  # [a, T, n]
    tps = s == _TP
    fps = (s == _UNMATCHED) & ~area_ignored[:, areas].T[:, None, :]
    tp_sum = np.cumsum(tps, axis=2).astype(np.float64)
    fp_sum = np.cumsum(fps, axis=2).astype(np.float64)
    ng = num_gt[areas].astype(np.float64)
    rc = tp_sum / ng[:, None, None]
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    recall[:, areas] = rc[:, :, -1].T
    pr = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]  # lvis-api's right-to-left max
    # searchsorted(rc, REC_THRS, 'left') without a call per row: rc = k / num_gt at the k-th true positive, so the
    # index is that of the k*-th true positive, k* the least k whose k / num_gt >= the recall threshold
    rows = len(areas) * num_t
    kstar = np.stack([np.searchsorted(np.arange(int(g) + 1) / g, REC_THRS, side="left") for g in ng])  # [a, R]
    kstar = np.repeat(kstar, num_t, axis=0)  # [rows, R]
    flat = tps.reshape(rows, n)
    ntp = flat.sum(axis=1)
    _, tp_col = np.nonzero(flat)
    starts = np.cumsum(ntp) - ntp
    valid = kstar <= ntp[:, None]
    at = np.clip(starts[:, None] + kstar - 1, 0, max(len(tp_col) - 1, 0))
    idx = np.where(kstar == 0, 0, tp_col[at] if len(tp_col) else 0)
    prf = pr.reshape(rows, n)
    vals = np.where(valid, prf[np.arange(rows)[:, None], np.where(valid, idx, 0)], 0.0)
    precision[:, :, areas] = vals.reshape(len(areas), num_t, num_r).transpose(1, 2, 0)
    return precision, recall


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
    d_geo: list = []
    if segm:
        seg_col = dets.segmentation
        d_geo = seg_col.dicts(lo, hi) if isinstance(seg_col, RLEColumn) else list(seg_col[lo:hi])  # type: ignore
        hw = gt.img_hw[d_img]
        d_area, valid = _rle_areas(d_geo, hw)
        if not valid:  # polygons, uncompressed RLE, or a bad mask to find
            d_area = np.zeros(len(d_geo))
            for j, g in enumerate(d_geo):
                d_geo[j], d_area[j] = _det_mask(g, int(hw[j, 0]), int(hw[j, 1]), int(dets.index[lo + j]))
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
    e_gt = gt_rows[np.repeat(pair_gstart[det_pair], g_det) + _ranks(g_det)]
    if segm:
        g_rle = _gt_rles([cols.anns[g_lo + r] for r in gt_rows.tolist()], gt, cols.img_index[g_lo:g_hi][gt_rows])
        dgeo = [d_geo[j] for j in order[det_rows].tolist()]
        iou = _mask_iou(dgeo, o_area[det_rows], g_rle, det_pair, pair_g, pair_gstart, common // num_cats)
    else:
        iou = _box_iou(boxes[order[np.repeat(det_rows, g_det)]], cols.bbox[g_lo:g_hi][e_gt])
    gt_ig = (g_area[gt_rows, None] < _AREA_LO) | (g_area[gt_rows, None] > _AREA_HI)
    states = _match(iou, e_start, det_pair, det_rank, pair_g, gt_ig, cols.ann_id[g_lo:g_hi][gt_rows] == 0,
                    pair_gstart)  # fmt: skip
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
    for c in np.flatnonzero(num_gt.sum(axis=1) > 0).tolist():
        s, e = int(c_bounds[c]), int(c_bounds[c + 1])
        precision[:, :, c, :], recall[:, c, :] = _accumulate_class(state[s:e], area_ignored[s:e], num_gt[c])
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
