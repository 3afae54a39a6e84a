"""Train and evaluate the baseline and every LT box classifier on lt_shapes: same schedule, several seeds.

Each (head, seed) run is `tools/demo.py --config configs/demo/lt_shapes_<head>.yaml SEED <seed>` in its own
process (the configs share lt_shapes_base.yaml, so only the head differs) and leaves
`<root>/<head>/seed<seed>/demo_results.json`. `pc_softmax` trains nothing: it evaluates the baseline's weights
of the same seed with PC Softmax (uniform target prior), a post-hoc prior correction to compare the heads with.
Finished runs are skipped, so an interrupted sweep resumes where it stopped.
The summary (bbox and segm AP / APr / APc / APf, mean ± sample std over seeds, and each head's APr minus
the baseline's) goes to `<root>/summary.md` and the per-run numbers to `<root>/results.csv`.

    python benchmarks/lt_shapes_heads.py                                   # full sweep: 9 heads x 2 seeds
    python benchmarks/lt_shapes_heads.py --heads baseline lda --seeds 0 --max-iter 2 --root /tmp/heads_smoke
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADS = ["baseline", "pc_softmax", "fed", "cb", "focal", "ldam", "balanced_softmax", "lade", "lda"]
# Post-hoc heads: no training; the baseline's weights are evaluated with another box classifier.
POSTHOC = {"pc_softmax": "baseline"}
TASKS = ("bbox", "segm")
METRICS = ("AP", "APr", "APc", "APf")
RESULTS_FILE = "demo_results.json"


def config_of(head: str) -> str:
    head = POSTHOC.get(head, head)
    path = os.path.join(REPO, "configs", "demo", f"lt_shapes_{head}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist; --heads takes names of configs/demo/lt_shapes_<head>.yaml.")
    return path


def scheduled_iterations(head: str, max_iter: Optional[int]) -> int:
    """--max-iter, else the config's SOLVER.MAX_ITER (through its _BASE_ chain)."""
    if max_iter is not None:
        return max_iter
    from lt_detectron.config import load_config_dict

    return int(load_config_dict(config_of(head))["SOLVER"]["MAX_ITER"])


def load_results(run_dir: str, max_iter: int) -> Optional[dict]:
    """The run's results if it finished with `max_iter` iterations (not e.g. an earlier smoke run), else None."""
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if summary.get("max_iter") == max_iter else None


def run_one(head: str, seed: int, run_dir: str, max_iter: Optional[int], opts: List[str]) -> dict:
    cmd = [sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config", config_of(head), "--output", run_dir]
    if max_iter is not None:
        cmd += ["--max-iter", str(max_iter)]
    cmd += ["SEED", str(seed)] + opts
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "sweep.log")
    print(f"[heads] {head} seed {seed}: {' '.join(cmd[1:])} (log: {log_path})", flush=True)
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{head} seed {seed} failed (exit {proc.returncode}); see the end of {log_path}.")
    summary = load_results(run_dir, scheduled_iterations(head, max_iter))
    if summary is None:
        raise RuntimeError(f"{head} seed {seed} exited 0 but wrote no {RESULTS_FILE} in {run_dir}.")
    print(f"[heads] {head} seed {seed} done in {(time.time() - start) / 60:.1f} min", flush=True)
    return summary


def evaluate_posthoc(head: str, seed: int, run_dir: str, trained_dir: str, max_iter: int, opts: List[str]) -> dict:
    """Evaluate the trained baseline of `seed` with BOX_CLASSIFIER `head` (same weights, other inference)."""
    weights = os.path.join(trained_dir, "model_final.pth")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{head} evaluates {weights}, which does not exist; run the baseline first.")
    from detectron2.checkpoint import DetectionCheckpointer

    from lt_detectron.data import default_lt_shapes_root, ensure_lt_shapes, register_lt_shapes
    from lt_detectron.engine import LTTrainer, build_cfg, register_lt_components

    register_lt_components()
    overrides = ["MODEL.ROI_HEADS.NAME", "LTROIHeads", "MODEL.LT.BOX_CLASSIFIER", head, "OUTPUT_DIR", run_dir]
    cfg = build_cfg(config_of(head), ["SEED", str(seed)] + opts + overrides)
    root = cfg.DATASETS.LT_SHAPES_DIR or default_lt_shapes_root()
    ensure_lt_shapes(root)
    register_lt_shapes(root)
    cfg.freeze()
    print(f"[heads] {head} seed {seed}: evaluating {weights} post hoc", flush=True)
    model = LTTrainer.build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    results = LTTrainer.test(cfg, model)
    summary = {"max_iter": max_iter, "results": {k: dict(v) for k, v in results.items()}, "weights": weights}
    os.makedirs(run_dir, exist_ok=True)
    _write_atomic(os.path.join(run_dir, RESULTS_FILE), json.dumps(summary, indent=2))
    return summary


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def mean_and_spread(values: List[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def summarise(runs: Dict[str, Dict[int, dict]], seeds: List[int], max_iter_label: str) -> tuple[str, str]:
    """(markdown summary, csv of every run)."""
    rows = []
    for head, by_seed in runs.items():
        for seed, summary in sorted(by_seed.items()):
            for task in TASKS:
                metrics = summary["results"].get(task, {})
                rows.append([head, seed, task] + [metrics.get(m, float("nan")) for m in METRICS])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["head", "seed", "task", *METRICS])
    writer.writerows(rows)

    def values(head: str, task: str, metric: str) -> List[float]:
        return [s["results"].get(task, {}).get(metric, float("nan")) for s in runs[head].values()]

    lines = [
        f"lt_shapes, {max_iter_label}, seeds {seeds}: mean ± sample std over seeds (LVIS AP on lt_shapes_val).",
        "",
        "| head | runs | "
        + " | ".join(f"{t} {m}" for t in TASKS for m in METRICS)
        + " | bbox APr - baseline | segm APr - baseline |",
        "|---" * (2 + len(TASKS) * len(METRICS) + 2) + "|",
    ]
    for head in runs:
        cells = [mean_and_spread(values(head, t, m)) for t in TASKS for m in METRICS]
        deltas = []
        for task in TASKS:
            if "baseline" in runs and head != "baseline":
                # Paired by seed: the same seed gives the same data order and initialisation to both heads.
                paired = [
                    runs[head][s]["results"].get(task, {}).get("APr", float("nan"))
                    - runs["baseline"][s]["results"].get(task, {}).get("APr", float("nan"))
                    for s in runs[head]
                    if s in runs["baseline"]
                ]
                deltas.append(mean_and_spread(paired))
            else:
                deltas.append("")
        lines.append(f"| {head} | {len(runs[head])} | " + " | ".join(cells + deltas) + " |")
    return "\n".join(lines) + "\n", buffer.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=HEADS, help="default: %(default)s")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--root", default=os.path.join(REPO, "output", "lt_shapes_heads"))
    parser.add_argument("--max-iter", type=int, default=None, help="override SOLVER.MAX_ITER (smoke runs)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    args = parser.parse_args(argv)
    for head in args.heads:
        config_of(head)  # fail before any training on a wrong name

    start = time.time()
    runs: Dict[str, Dict[int, dict]] = {}
    for head in args.heads:
        for seed in args.seeds:
            run_dir = os.path.join(args.root, head, f"seed{seed}")
            summary = load_results(run_dir, scheduled_iterations(head, args.max_iter))
            if summary is None and head in POSTHOC:
                trained_dir = os.path.join(args.root, POSTHOC[head], f"seed{seed}")
                if load_results(trained_dir, scheduled_iterations(head, args.max_iter)) is None:
                    run_one(POSTHOC[head], seed, trained_dir, args.max_iter, list(args.opts))
                iters = scheduled_iterations(head, args.max_iter)
                summary = evaluate_posthoc(head, seed, run_dir, trained_dir, iters, list(args.opts))
            elif summary is None:
                summary = run_one(head, seed, run_dir, args.max_iter, list(args.opts))
            else:
                print(f"[heads] {head} seed {seed}: finished earlier, skipped ({run_dir})", flush=True)
            runs.setdefault(head, {})[seed] = summary
    label = f"{args.max_iter} iterations" if args.max_iter is not None else "the lt_shapes_base.yaml schedule"
    markdown, table = summarise(runs, args.seeds, label)
    os.makedirs(args.root, exist_ok=True)
    _write_atomic(os.path.join(args.root, "summary.md"), markdown)
    _write_atomic(os.path.join(args.root, "results.csv"), table)
    print("\n" + markdown)
    print(
        f"[heads] {sum(len(v) for v in runs.values())} runs, {(time.time() - start) / 60:.1f} min; "
        f"{os.path.join(args.root, 'summary.md')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
