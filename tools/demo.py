#!/usr/bin/env python
"""`make demo`: generate lt_shapes if absent, train the from-scratch baseline on CPU, evaluate with LVIS AP, print
the results table and the total wall time. Exits non-zero on failure.

    python tools/demo.py                                  # the full demo (~10 min of training on 2 cores)
    python tools/demo.py --max-iter 20 --output /tmp/smoke  # a quick smoke run
    python tools/demo.py --config configs/demo/lt_shapes_lda.yaml --output output/demo_lda MODEL.LT.LDA.GAMMA 2.0
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import traceback

from lt_detectron.evaluation.report import DEMO_METRICS as METRICS
from lt_detectron.evaluation.report import format_lvis_table  # noqa: F401  (the demo's table; also used by tests)
from lt_detectron.utils.io import write_json_atomic
from lt_detectron.utils.provenance import git_commit

# OpenMP threads that busy-wait collapse when another process shares the cores (timings in
# benchmarks/results/lt_shapes_demo.md); passive waiting costs little on an idle machine. Must be set before torch
# loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="demo config (default: %(default)s)")
    parser.add_argument("--output", default=None, help="output folder (default: the config's OUTPUT_DIR)")
    parser.add_argument("--max-iter", type=int, default=None, help="override SOLVER.MAX_ITER (for a smoke run)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="trailing KEY VALUE config overrides")
    return parser.parse_args(argv)


def _check_results(results) -> dict:
    if not results or "bbox" not in results:
        raise RuntimeError(
            f"evaluation returned no bbox metrics ({results!r}); check DATASETS.TEST and the inference log above."
        )
    for task, metrics in results.items():
        for name in METRICS:
            value = metrics.get(name)
            if value is None or not math.isfinite(value):
                if name in ("APr", "APc", "APf") and value is not None:
                    continue  # NaN when a group has no class in the val split: reported, not fatal
                raise RuntimeError(f"evaluation result {task}/{name} is {value!r}; the run did not produce a metric.")
    return results


def _write_json_atomic(path: str, obj) -> None:
    write_json_atomic(obj, path, indent=2)


def _resolve_weights(cfg) -> None:
    """A relative MODEL.WEIGHTS (the pre-trained demo configs) is looked up in the working folder, then the repo."""
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights or os.path.isabs(weights) or os.path.isfile(weights):
        return
    if not os.path.isfile(os.path.join(REPO, weights)):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS {weights!r} exists neither in {os.getcwd()} nor in {REPO}; the pre-trained demo configs "
            "(configs/demo/pretrained/) need `python tools/pretrain_backbone.py` once (docs/results.md)."
        )
    cfg.MODEL.WEIGHTS = os.path.join(REPO, weights)


def run_demo(args: argparse.Namespace) -> dict:
    start = time.time()
    import torch
    from detectron2.engine import default_setup
    from detectron2.utils.logger import setup_logger

    from lt_detectron.data import default_lt_shapes_root, ensure_lt_shapes, register_lt_shapes
    from lt_detectron.engine import LTTrainer, build_cfg, check_cfg_datasets

    opts = list(args.opts)
    if args.output:
        opts += ["OUTPUT_DIR", args.output]
    if args.max_iter is not None:
        opts += ["SOLVER.MAX_ITER", str(args.max_iter)]
    cfg = build_cfg(args.config, opts)
    _resolve_weights(cfg)

    root = cfg.DATASETS.LT_SHAPES_DIR or default_lt_shapes_root()
    print(f"[demo] dataset: lt_shapes in {root} (generated now if absent, ~1 min) ...", flush=True)
    t0 = time.time()
    ensure_lt_shapes(root)
    register_lt_shapes(root)
    check_cfg_datasets(cfg)  # annotation files valid before any training starts
    print(f"[demo] dataset ready ({time.time() - t0:.0f} s)", flush=True)

    cfg.freeze()
    setup_args = argparse.Namespace(config_file=args.config, eval_only=False, opts=opts)
    default_setup(cfg, setup_args)  # output dir, log file, config dump, seed
    setup_logger(output=cfg.OUTPUT_DIR, name="lt_detectron")
    print(
        f"[demo] training {cfg.SOLVER.MAX_ITER} iterations into {cfg.OUTPUT_DIR} "
        f"(torch threads: {torch.get_num_threads()}; progress every 20 iterations with ETA)",
        flush=True,
    )
    t0 = time.time()
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = _check_results(trainer.train())  # evaluates DATASETS.TEST after the last iteration
    train_and_eval_s = time.time() - t0

    total_s = time.time() - start
    table = format_lvis_table(
        results,
        title=f"LVIS-style results on {', '.join(cfg.DATASETS.TEST)} "
        f"({os.path.relpath(args.config, REPO)}, {cfg.SOLVER.MAX_ITER} iterations)",
    )
    bbox = results["bbox"]
    summary = {
        "config": os.path.relpath(args.config, REPO),
        "max_iter": cfg.SOLVER.MAX_ITER,
        "results": results,
        "train_and_eval_seconds": round(train_and_eval_s, 1),
        "total_seconds": round(total_s, 1),
        "torch_threads": torch.get_num_threads(),
        "code": git_commit(REPO),  # the code that made these numbers
    }
    _write_json_atomic(os.path.join(cfg.OUTPUT_DIR, "demo_results.json"), summary)
    print("\n" + table)
    print(f"\nbbox APf - APr = {bbox['APf'] - bbox['APr']:.1f}")
    print(f"total wall time: {total_s / 60:.1f} min (training + evaluation {train_and_eval_s / 60:.1f} min)")
    print(f"results: {os.path.join(cfg.OUTPUT_DIR, 'demo_results.json')}")
    for dataset in cfg.DATASETS.TEST:
        per_class = os.path.join(cfg.OUTPUT_DIR, "inference", dataset, "lvis_per_class.csv")
        if os.path.exists(per_class):  # written by the fast evaluator (TEST.LT_EVALUATOR "fast")
            print(f"per-class AP ({dataset}): {per_class} and lvis_ap_vs_train_images.png beside it")
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        run_demo(args)
    except KeyboardInterrupt:
        print("[demo] interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # report, then fail the make target
        traceback.print_exc()
        print(f"[demo] FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
