#!/usr/bin/env python
"""Re-evaluate a saved LVIS results file without the model: prints the table, writes the per-class CSV and plot.

    python tools/evaluate_lvis.py --gt lvis_v1_val.json \
        --results output/inference/lvis_v1_val/lvis_instances_results.json
    python tools/evaluate_lvis.py --gt ... --results ... --iou-type bbox --fixed-ap --workers 4
    python tools/evaluate_lvis.py --gt ... --results ... --lvis-api      # lvis-api's LVISEval (the reference)
    python tools/evaluate_lvis.py --gt ... --results ... --compare       # both, and their largest difference

The results file is Detectron2's `lvis_instances_results.json` or any LVIS-format results list
({image_id, category_id, bbox (XYWH), score[, segmentation (RLE)]}). Standard AP keeps the 300 highest-scoring
detections per image; --fixed-ap evaluates Fixed AP (top --fixed-ap-k detections per class, no per-image cap).
Outputs go to --output (default: the results file's folder): lvis_per_class.csv, lvis_ap_vs_train_images.png,
lvis_summary.md. Exit status 2 on bad input, with the first bad record named.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from lt_detectron.evaluation import LVISInputError, default_workers  # noqa: E402
from lt_detectron.evaluation.fast_lvis import FIXED_AP_DEFAULT_K, LVISEvalResult, evaluate_detections  # noqa: E402
from lt_detectron.evaluation.inputs import load_detections, load_ground_truth  # noqa: E402
from lt_detectron.evaluation.report import detectron2_metrics, format_lvis_table, format_table, write_reports  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="LVIS-format ground truth json (e.g. lvis_v1_val.json)")
    p.add_argument("--results", required=True, help="results json (Detectron2's lvis_instances_results.json)")
    p.add_argument("--iou-type", nargs="+", choices=("bbox", "segm"), default=None,
                   help="default: bbox and segm if the results have masks, else bbox")  # fmt: skip
    p.add_argument("--fixed-ap", action="store_true", help="Fixed AP (Dave et al. 2021) instead of standard AP")
    p.add_argument("--fixed-ap-k", type=int, default=FIXED_AP_DEFAULT_K, help="detections per class (%(default)s)")
    p.add_argument("--max-dets", type=int, default=300, help="per-image cap of standard AP (%(default)s)")
    p.add_argument("--workers", type=int, default=None, help=f"processes (default: the CPUs, {default_workers()})")
    p.add_argument("--train-gt", default=None,
                   help="training json for the per-class training counts (default: the counts the gt categories "
                        "store, as LVIS does)")  # fmt: skip
    p.add_argument("--output", default=None, help="folder for the CSV / PNG / table (default: the results' folder)")
    backend = p.add_mutually_exclusive_group()
    backend.add_argument("--lvis-api", action="store_true", help="evaluate with lvis-api's LVISEval (slow)")
    backend.add_argument("--compare", action="store_true", help="run both and print their largest difference")
    return p.parse_args(argv)


def _has_masks(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b'"segmentation"' in head


def _run_fast(args, gt, iou_types) -> Dict[str, LVISEvalResult]:
    from tqdm import tqdm

    bar = tqdm(desc="reading results", total=0, unit="block", leave=False)

    def read_progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    dets = load_detections(
        args.results, gt, need_bbox="bbox" in iou_types, need_segm="segm" in iou_types, progress=read_progress
    )
    bar.close()
    out = {}
    for task in iou_types:
        with tqdm(desc=f"evaluating {task}", unit="class chunk", leave=False) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            out[task] = evaluate_detections(
                gt, dets, task, fixed_ap=args.fixed_ap, fixed_ap_k=args.fixed_ap_k, max_dets_per_image=args.max_dets,
                workers=args.workers, progress=progress,
            )  # fmt: skip
    return out


def _run_lvis_api(args, iou_types) -> Dict[str, LVISEvalResult]:
    from tqdm import tqdm

    from lt_detectron.data import patch_lvis_numpy_aliases
    from lt_detectron.evaluation.lvis_api import evaluate_with_lvis_api

    patch_lvis_numpy_aliases()
    from lvis import LVIS

    lvis_gt = LVIS(args.gt)
    with open(args.results) as f:
        results = json.load(f)
    out = {}
    for task in tqdm(iou_types, desc="lvis-api", unit="iou type", leave=False):
        out[task] = evaluate_with_lvis_api(
            args.gt, results, task, fixed_ap=args.fixed_ap, fixed_ap_k=args.fixed_ap_k,
            max_dets_per_image=args.max_dets, lvis_gt=lvis_gt,
        )  # fmt: skip
    return out


def _train_counts(path: Optional[str], gt):
    if not path:
        return None, None
    from lt_detectron.data import lvis_json_class_stats

    stats = lvis_json_class_stats(path)
    if len(stats["image_count"]) != gt.num_cats:
        raise LVISInputError(f"--train-gt {path!r} has {len(stats['image_count'])} categories, the gt {gt.num_cats}")
    return stats["image_count"], stats["instance_count"]


def _print_results(name: str, results: Dict[str, LVISEvalResult], args) -> None:
    kind = "Fixed AP" if args.fixed_ap else f"AP at {args.max_dets} detections per image"
    print(format_lvis_table({t: detectron2_metrics(r) for t, r in results.items()}, title=f"{name}: {kind}"))
    print()
    print(format_table(results))


def main(argv=None) -> int:
    args = parse_args(argv)
    iou_types = args.iou_type or (["bbox", "segm"] if _has_masks(args.results) else ["bbox"])
    output = args.output or os.path.dirname(os.path.abspath(args.results))
    try:
        t0 = time.perf_counter()
        gt = load_ground_truth(args.gt)
        if args.lvis_api:
            results = _run_lvis_api(args, iou_types)
        else:
            results = _run_fast(args, gt, iou_types)
        elapsed = time.perf_counter() - t0
        images, instances = _train_counts(args.train_gt, gt)
    except LVISInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_results("lvis-api" if args.lvis_api else "fast evaluator", results, args)
    print(f"\nevaluated in {elapsed:.1f} s")
    fixed = results if args.fixed_ap else None
    paths = write_reports(output, gt, {} if args.fixed_ap else results, fixed, images, instances)
    print(f"per-class AP: {paths['csv']}")
    if "png" in paths:
        print(f"plot: {paths['png']}")
    print(f"table: {paths['table']}")
    if args.compare:
        from lt_detectron.evaluation.lvis_api import largest_difference

        t0 = time.perf_counter()
        ref = _run_lvis_api(args, iou_types)
        print(f"\nlvis-api evaluated in {time.perf_counter() - t0:.1f} s")
        _print_results("lvis-api", ref, args)
        worst = 0.0
        for task in iou_types:
            d = largest_difference(results[task], ref[task])
            worst = max(worst, d["summary"], d["per_class"])
            print(
                f"{task}: largest difference fast vs lvis-api: summary {d['summary']:.3g} ({d['summary_metric']}), "
                f"per-class AP {d['per_class']:.3g} (category {d['per_class_id']})"
            )
        print(f"largest difference overall: {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
