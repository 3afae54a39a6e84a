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
lvis_summary.md. When that folder already holds such reports (the training run's evaluation writes them next to its
results file), they are kept and this evaluation goes to a new folder <folder>/evaluate_lvis-<n>, which the tool
prints; --overwrite replaces them instead. Exit status 2 on bad input (flags, files, the first bad record), with one
line `error: ...` naming it and the fix; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from lt_detectron.utils.numerics import pin_cpu_numerics  # noqa: E402

pin_cpu_numerics()  # first, before torch loads: pinned CPU kernels (docs/results.md), sleeping OpenMP threads

from lt_detectron.evaluation import LVISInputError, default_workers  # noqa: E402
from lt_detectron.evaluation.fast_lvis import FIXED_AP_DEFAULT_K, LVISEvalResult, evaluate_detections  # noqa: E402
from lt_detectron.evaluation.inputs import Detections, LVISGroundTruth, load_inputs  # noqa: E402
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
    p.add_argument("--output", default=None,
                   help="folder for the CSV / PNG / table (default: the results' folder); when it already holds "
                        "them, a new folder <output>/evaluate_lvis-<n> is used")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="write into --output even when it already holds reports (replaces them)")  # fmt: skip
    backend = p.add_mutually_exclusive_group()
    backend.add_argument("--lvis-api", action="store_true", help="evaluate with lvis-api's LVISEval (slow)")
    backend.add_argument("--compare", action="store_true", help="run both and print their largest difference")
    return p.parse_args(argv)


REPORTS = ("lvis_per_class.csv", "lvis_ap_vs_train_images.png", "lvis_summary.md")  # write_reports' files
NEW_FOLDER = "evaluate_lvis-{}"


def _check_args(args) -> Optional[str]:
    """The first problem with the flags (`--flag VALUE: what is wrong; the fix`), or None. Reads nothing big."""
    for flag, value, fix in (
        ("--max-dets", args.max_dets, "the per-image cap of standard AP; LVIS uses 300, the default"),
        ("--fixed-ap-k", args.fixed_ap_k, f"detections per class of Fixed AP; {FIXED_AP_DEFAULT_K} is the default"),
        ("--workers", args.workers, f"processes; leave the flag out to use the CPUs ({default_workers()})"),
    ):  # fmt: skip
        if value is not None and value < 1:
            return f"{flag} {value}: must be an integer >= 1 ({fix})"
    for flag, path, what in (
        ("--gt", args.gt, "the LVIS-format ground truth json, e.g. lvis_v1_val.json"),
        ("--results", args.results, "Detectron2's OUTPUT_DIR/inference/<dataset>/lvis_instances_results.json"),
        ("--train-gt", args.train_gt, "the LVIS-format training json, e.g. lvis_v1_train.json"),
    ):
        if path is None:
            continue
        if os.path.isdir(path):
            return f"{flag} {path!r} is a folder; pass the path of a json file ({what})"
        if not os.path.isfile(path):
            return f"{flag} {path!r} does not exist; pass the path of an existing json file ({what})"
    if args.output is not None and os.path.exists(args.output) and not os.path.isdir(args.output):
        return (
            f"--output {args.output!r} is an existing file, not a folder; pass a folder (it is created if absent), "
            "or leave --output out to write next to the results file"
        )
    folder = args.output if args.output is not None else os.path.dirname(os.path.abspath(args.results))
    flag = "--output" if args.output is not None else "the results file's folder (the default --output)"
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{flag} {folder!r} cannot be created: {existing!r} is a file; pass --output with a folder path"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{flag} {folder!r} is not writable; pass --output with a folder you can write to"
    return None


def _output_folder(args) -> Tuple[str, List[str]]:
    """Where the reports go, and the reports already in the folder asked for that made it a new folder.

    The asked-for folder (--output, else the results file's folder) unless it holds reports and --overwrite is not
    given: then its first free `evaluate_lvis-<n>`, so that the training run's own reports are never replaced."""
    base = args.output or os.path.dirname(os.path.abspath(args.results))
    present = [name for name in REPORTS if os.path.exists(os.path.join(base, name))]
    if args.overwrite or not present:
        return base, []
    n = 1
    while os.path.exists(os.path.join(base, NEW_FOLDER.format(n))):
        n += 1
    return os.path.join(base, NEW_FOLDER.format(n)), present


def _has_masks(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b'"segmentation"' in head


def _load_checked(args, iou_types) -> Tuple[LVISGroundTruth, Detections]:
    """The ground truth, and the results file read and checked against it (every backend runs these checks first);
    with more than one worker, the results file is read while the ground truth loads."""
    from tqdm import tqdm

    bar = tqdm(desc="reading results", total=0, unit="file", leave=False)

    def read_progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return load_inputs(
            args.gt, args.results, need_bbox="bbox" in iou_types, need_segm="segm" in iou_types,
            concurrent=(args.workers or default_workers()) > 1, progress=read_progress,
        )  # fmt: skip
    finally:
        bar.close()  # cleared before an error is printed


def _run_fast(args, gt, dets: Detections, iou_types) -> Dict[str, LVISEvalResult]:
    from tqdm import tqdm

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

    fix = "pass the LVIS-format training json of the model (e.g. lvis_v1_train.json), or leave --train-gt out"
    try:
        stats = lvis_json_class_stats(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # json, AnnotationError, bad records
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LVISInputError(
            f"--train-gt {path!r} cannot be read as LVIS training annotations ({reason}); {fix}"
        ) from None
    if len(stats["image_count"]) != gt.num_cats:
        raise LVISInputError(
            f"--train-gt {path!r} has {len(stats['image_count'])} categories, the gt {gt.num_cats}; {fix}"
        )
    return stats["image_count"], stats["instance_count"]


def _print_results(name: str, results: Dict[str, LVISEvalResult], args) -> None:
    kind = "Fixed AP" if args.fixed_ap else f"AP at {args.max_dets} detections per image"
    print(format_lvis_table({t: detectron2_metrics(r) for t, r in results.items()}, title=f"{name}: {kind}"))
    print()
    print(format_table(results))


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    iou_types = args.iou_type or (["bbox", "segm"] if _has_masks(args.results) else ["bbox"])
    output, kept = _output_folder(args)
    try:
        t0 = time.perf_counter()
        gt, dets = _load_checked(args, iou_types)  # --lvis-api too: its own reader fails on bad input, unnamed
        images, instances = _train_counts(args.train_gt, gt)
        if args.lvis_api:
            del dets
            results = _run_lvis_api(args, iou_types)
        else:
            results = _run_fast(args, gt, dets, iou_types)
        elapsed = time.perf_counter() - t0
    except LVISInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_results("lvis-api" if args.lvis_api else "fast evaluator", results, args)
    print(f"\nevaluated in {elapsed:.1f} s")
    fixed = results if args.fixed_ap else None
    if kept:
        print(
            f"\n{os.path.dirname(output)} already holds {', '.join(kept)} (kept; --overwrite replaces them): "
            f"this evaluation's reports go to {output}"
        )
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
