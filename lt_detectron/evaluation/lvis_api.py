"""lvis-api 0.5.3 (`lvis.LVISEval`) as Detectron2 runs it, returning the fast evaluator's result type: the reference
backend of `tools/evaluate_lvis.py --lvis-api / --compare` and of the speed benchmark."""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from typing import List

import numpy as np

from .fast_lvis import FIXED_AP_DEFAULT_K, LVISEvalResult, per_class_ap

__all__ = ["evaluate_with_lvis_api"]


def evaluate_with_lvis_api(
    gt_json: str,
    results: List[dict],
    iou_type: str,
    *,
    fixed_ap: bool = False,
    fixed_ap_k: int = FIXED_AP_DEFAULT_K,
    max_dets_per_image: int = 300,
    lvis_gt=None,
    copy_results: bool = True,
) -> LVISEvalResult:
    """Detectron2's `_evaluate_predictions_on_lvis` (segm: boxes dropped; `LVISResults` cap), or for Fixed AP the
    protocol of Dave et al.'s script (top `fixed_ap_k` per class, `max_dets=-1`). `results` is modified unless
    `copy_results`.

    Args:
        gt_json: path of the LVIS ground-truth json (read unless `lvis_gt` is given).
        results: LVIS-format result dicts (image_id, category_id, bbox, score[, segmentation]).
        iou_type: "bbox" or "segm".
        fixed_ap: evaluate Fixed AP instead of standard AP.
        fixed_ap_k: detections kept per class for Fixed AP.
        max_dets_per_image: per-image cap of standard AP.
        lvis_gt: an already loaded `lvis.LVIS` ground truth, to skip reading `gt_json`.
        copy_results: work on a deep copy of `results`.

    Returns:
        The result in the fast evaluator's type (its `timings` has only "total", in seconds).
    """
    from lt_detectron.data import patch_lvis_numpy_aliases

    patch_lvis_numpy_aliases()
    from lvis import LVIS, LVISEval, LVISResults

    t0 = time.perf_counter()
    gt = lvis_gt if lvis_gt is not None else LVIS(gt_json)
    results = copy.deepcopy(results) if copy_results else results
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)
    if fixed_ap:
        by_cat = defaultdict(list)
        for r in results:
            by_cat[r["category_id"]].append(r)
        results = [
            r for anns in by_cat.values() for r in sorted(anns, key=lambda a: a["score"], reverse=True)[:fixed_ap_k]
        ]
        dt = LVISResults(gt, results, max_dets=-1)
    else:
        dt = LVISResults(gt, results, max_dets=max_dets_per_image)
    ev = LVISEval(gt, dt, iou_type)
    if fixed_ap:
        ev.params.max_dets = -1
    ev.run()
    res = ev.get_results()
    label = ev.params.max_dets
    summary = {}
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"):
        summary[key] = float(res[key])
    for key in ("AR", "ARs", "ARm", "ARl"):
        summary[key] = float(res[f"{key}@{label}"])
    precision = np.asarray(ev.eval["precision"])
    return LVISEvalResult(
        iou_type=iou_type,
        summary=summary,
        per_class_ap=per_class_ap(precision),
        cat_ids=np.array(sorted(gt.get_cat_ids())),
        precision=precision,
        recall=np.asarray(ev.eval["recall"]),
        fixed_ap=fixed_ap,
        max_dets_per_image=max_dets_per_image,
        timings={"total": time.perf_counter() - t0},
    )


def largest_difference(a: LVISEvalResult, b: LVISEvalResult) -> dict:
    """Largest absolute difference of the summary numbers and of the per-class APs (NaN where both are NaN).

    Args:
        a: one result.
        b: another result of the same categories, in the same order.

    Returns:
        {"summary": the largest difference of a summary number, "summary_metric": its name, "per_class": the
        largest per-class AP difference, "per_class_id": its category id (None without categories)}. A per-class
        AP that is NaN in one result only counts as -1 there.
    """
    summary = max(((abs(a.summary[k] - b.summary[k]), k) for k in a.summary), default=(0.0, ""))
    both = ~(np.isnan(a.per_class_ap) & np.isnan(b.per_class_ap))
    diff = np.abs(np.nan_to_num(a.per_class_ap, nan=-1.0) - np.nan_to_num(b.per_class_ap, nan=-1.0))
    diff[~both] = 0.0
    k = int(np.argmax(diff)) if len(diff) else 0
    return {
        "summary": float(summary[0]),
        "summary_metric": summary[1],
        "per_class": float(diff[k]) if len(diff) else 0.0,
        "per_class_id": int(a.cat_ids[k]) if len(diff) else None,
    }
