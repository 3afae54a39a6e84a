"""Train and evaluate the baseline and every LT box classifier on lt_shapes: same schedule, several seeds, in
two regimes: from scratch (configs/demo/lt_shapes_<head>.yaml) and from a pre-trained backbone
(configs/demo/pretrained/lt_shapes_<head>.yaml, the papers' regime; tools/pretrain_backbone.py is run first if its
checkpoint is missing).

Each (head, seed) run is `tools/demo.py --config <config> SEED <seed>` in its own process and leaves
`<root>/<regime>/<head>/seed<seed>/demo_results.json`. `pc_softmax` trains nothing: it evaluates the baseline's
weights of the same seed with PC Softmax (uniform target prior), a post-hoc prior correction to compare the heads
with. Finished runs are skipped, so an interrupted sweep resumes where it stopped.
The tables (bbox and segm AP / APr / APc / APf, mean ± sample std over seeds, and each head's difference to the
baseline paired by seed with its 95% t-interval) go to benchmarks/results/lt_shapes_heads_<regime>.md with the
environment and the data fingerprint (benchmarks/_results.py); per-run numbers to `<root>/<regime>/results.csv`.

    python benchmarks/lt_shapes_heads.py --regime scratch          # 9 heads x 3 seeds, ~10 min per run on 2 cores
    python benchmarks/lt_shapes_heads.py --regime pretrained --heads baseline lda --seeds 0
    python benchmarks/lt_shapes_heads.py --heads baseline lda --seeds 0 --max-iter 2 --root /tmp/heads_smoke
"""

from __future__ import annotations

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before torch loads: the pinned CPU kernels of the results (docs/results.md)

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import (  # noqa: E402
    format_markdown_table,
    format_mean_std,
    lt_shapes_fingerprint,
    paired_difference,
    plot_paired_differences,
    write_results,
)

from lt_detectron.utils.io import write_text_atomic  # noqa: E402

REGIMES = ("scratch", "pretrained")
# Most informative first, so a sweep cut short has the key rows.
HEADS = ["baseline", "pc_softmax", "norcal", "lda", "lda_shared", "lda_rfs", "seesaw", "eqlv2", "cosine", "cb", "lade"]
HEADS += ["ldam", "balanced_softmax", "focal", "fed"]
# Extra rows per regime (none at present).
EXTRA_HEADS: Dict[str, List[str]] = {"scratch": [], "pretrained": []}
# Post-hoc heads: no training; the baseline's weights are evaluated with these inference overrides.
POSTHOC = {
    "pc_softmax": ("baseline", ["MODEL.LT.BOX_CLASSIFIER", "pc_softmax"]),
    "norcal": ("baseline", ["MODEL.LT.BOX_CLASSIFIER", "softmax", "TEST.LT_CALIBRATION", "norcal"]),
}
TASKS = ("bbox", "segm")
METRICS = ("AP", "APr", "APc", "APf")
RESULTS_FILE = "demo_results.json"


def config_of(head: str, regime: str = "scratch") -> str:
    if regime not in REGIMES:
        raise ValueError(f"regime {regime!r} is not one of {REGIMES}")
    head = POSTHOC[head][0] if head in POSTHOC else head
    folder = os.path.join(REPO, "configs", "demo", *(["pretrained"] if regime == "pretrained" else []))
    path = os.path.join(folder, f"lt_shapes_{head}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist; --heads takes names of {os.path.relpath(folder, REPO)}/lt_shapes_<head>.yaml."
        )
    return path


def scheduled_iterations(head: str, max_iter: Optional[int], regime: str = "scratch") -> int:
    """--max-iter, else the config's SOLVER.MAX_ITER (through its _BASE_ chain)."""
    if max_iter is not None:
        return max_iter
    from lt_detectron.config import load_config_dict

    return int(load_config_dict(config_of(head, regime))["SOLVER"]["MAX_ITER"])


def pretrained_weights(regime: str) -> Optional[str]:
    """The MODEL.WEIGHTS of the regime's configs (absolute), or None from scratch."""
    if regime != "pretrained":
        return None
    from lt_detectron.config import load_config_dict

    weights = load_config_dict(config_of("baseline", regime))["MODEL"]["WEIGHTS"]
    return weights if os.path.isabs(weights) else os.path.join(REPO, weights)


def ensure_pretrained(regime: str) -> Optional[str]:
    """Run tools/pretrain_backbone.py once for the pre-trained regime (it reuses a cached checkpoint)."""
    weights = pretrained_weights(regime)
    if weights is None:
        return None
    cmd = [sys.executable, os.path.join(REPO, "tools", "pretrain_backbone.py"), "--out", weights]
    print(f"[heads] pre-trained backbone: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return weights


def load_results(run_dir: str, max_iter: int) -> Optional[dict]:
    """The run's results if it finished with `max_iter` iterations (not e.g. an earlier smoke run), else None."""
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if summary.get("max_iter") == max_iter else None


def run_one(
    head: str, seed: int, run_dir: str, max_iter: Optional[int], opts: List[str], regime: str = "scratch"
) -> dict:
    config = config_of(head, regime)
    cmd = [sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config", config, "--output", run_dir]
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
    summary = load_results(run_dir, scheduled_iterations(head, max_iter, regime))
    if summary is None:
        raise RuntimeError(f"{head} seed {seed} exited 0 but wrote no {RESULTS_FILE} in {run_dir}.")
    print(f"[heads] {head} seed {seed} done in {(time.time() - start) / 60:.1f} min", flush=True)
    return summary


def evaluate_posthoc(
    head: str, seed: int, run_dir: str, trained_dir: str, max_iter: int, opts: List[str], regime: str = "scratch"
) -> dict:
    """Evaluate the trained baseline of `seed` with BOX_CLASSIFIER `head` (same weights, other inference)."""
    weights = os.path.join(trained_dir, "model_final.pth")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{head} evaluates {weights}, which does not exist; run the baseline first.")
    from detectron2.checkpoint import DetectionCheckpointer

    from lt_detectron.data import default_lt_shapes_root, ensure_lt_shapes, register_lt_shapes
    from lt_detectron.engine import LTTrainer, build_cfg, register_lt_components

    register_lt_components()
    overrides = ["MODEL.ROI_HEADS.NAME", "LTROIHeads", *POSTHOC[head][1], "OUTPUT_DIR", run_dir]
    # The trained weights replace MODEL.WEIGHTS (the pre-trained backbone) below.
    cfg = build_cfg(config_of(head, regime), ["SEED", str(seed)] + opts + overrides + ["MODEL.WEIGHTS", ""])
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
    write_text_atomic(os.path.join(run_dir, RESULTS_FILE), json.dumps(summary, indent=2))
    return summary


def _metric(summary: dict, task: str, metric: str) -> float:
    """The metric, NaN where missing or where LVIS reports -1 / -100 (no class of that group in the split)."""
    value = summary["results"].get(task, {}).get(metric, float("nan"))
    return value if value >= 0 else float("nan")


def summarise(runs: Dict[str, Dict[int, dict]], seeds: List[int], label: str) -> tuple[str, str]:
    """(markdown tables + findings, csv of every run). Differences to the baseline are paired by seed."""
    rows = []
    for head, by_seed in runs.items():
        for seed, summary in sorted(by_seed.items()):
            for task in TASKS:
                rows.append([head, seed, task] + [_metric(summary, task, m) for m in METRICS])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["head", "seed", "task", *METRICS])
    writer.writerows(rows)

    few = "; fewer than 3 seeds: not a result" if len(seeds) < 3 else ""
    parts = [
        f"lt_shapes, {label}, seeds {seeds}{few}. LVIS AP on lt_shapes_val; mean ± sample std over seeds. "
        "Δ columns: the head minus the baseline of the same seed (same data order), mean with its two-sided 95% "
        "Student-t interval over seeds; * marks an interval that excludes zero."
    ]
    findings = []
    for task in TASKS:
        header = ["head", "runs", *METRICS] + [f"Δ {m} [95% CI]" for m in METRICS]
        table_rows = []
        for head in runs:
            cells = [format_mean_std(_metric(s, task, m) for s in runs[head].values()) for m in METRICS]
            deltas = []
            for metric in METRICS:
                if head == "baseline" or "baseline" not in runs:
                    deltas.append("")
                    continue
                diff = paired_difference(
                    {k: _metric(v, task, metric) for k, v in runs[head].items()},
                    {k: _metric(v, task, metric) for k, v in runs["baseline"].items()},
                )
                deltas.append(diff.format() + (" *" if diff.excludes_zero else ""))
                if diff.excludes_zero:
                    findings.append(f"{head} {task} {metric} {diff.verdict} {diff.format()}")
            table_rows.append([head, str(len(runs[head])), *cells, *deltas])
        parts.append(f"{task}:\n\n" + format_markdown_table(header, table_rows))
    parts.append(
        "Differences to the baseline whose 95% interval excludes zero (per comparison, no multiple-comparison "
        "correction); every other difference is not shown by these seeds:\n\n"
        + ("\n".join(f"- {f}" for f in findings) if findings else "- none")
    )
    return "\n\n".join(parts) + "\n", buffer.getvalue()


def training_health(root: str, heads: List[str], seeds: List[int]) -> str:
    """Markdown: per head, the box head's dead-unit fraction (largest and last logged value over the seeds) and, for
    LDA heads, a_t and the accuracy gap at the end, from each run's metrics.json (20-iteration medians)."""
    lines = [
        "| head | dead units: largest / last (max over seeds) | a_t at the end (per seed) | accuracy gap at the end |",
        "|---|---|---|---|",
    ]
    for head in heads:
        largest, last, alphas, gaps = 0.0, 0.0, [], []
        for seed in seeds:
            path = os.path.join(root, head, f"seed{seed}", "metrics.json")
            if not os.path.isfile(path):
                continue
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            dead = [r["lt/box_head_dead_fraction"] for r in rows if "lt/box_head_dead_fraction" in r]
            if dead:
                largest, last = max(largest, max(dead)), max(last, dead[-1])
            tail = [r for r in rows if "lda/alpha" in r]
            if tail:
                alphas.append(f"{tail[-1]['lda/alpha']:.0f}")
                gaps.append(f"{tail[-1]['lda/acc_gap']:.1f}")
        if head in POSTHOC:
            continue
        cells = [f"{100 * largest:.1f} % / {100 * last:.1f} %", ", ".join(alphas) or "–", ", ".join(gaps) or "–"]
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_gains(runs: Dict[str, Dict[int, dict]], path: str, label: str) -> Optional[str]:
    """Each head's paired difference to the baseline, Δ AP (x) against Δ APr (y), bbox and segm panels."""
    if "baseline" not in runs:
        return None

    def diff(head: str, task: str, metric: str):
        return paired_difference(
            {k: _metric(v, task, metric) for k, v in runs[head].items()},
            {k: _metric(v, task, metric) for k, v in runs["baseline"].items()},
        )

    panels = {
        task: {head: (diff(head, task, "AP"), diff(head, task, "APr")) for head in runs if head != "baseline"}
        for task in TASKS
    }
    return plot_paired_differences(
        panels, path, "Δ AP vs baseline", "Δ APr vs baseline", f"lt_shapes heads, {label}: mean and 95 % interval"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", choices=REGIMES, default="scratch", help="default: %(default)s")
    parser.add_argument("--heads", nargs="+", default=None, help=f"default: {HEADS} and the regime's {EXTRA_HEADS}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=os.path.join(REPO, "output", "lt_shapes_heads"), help="run folders")
    parser.add_argument("--max-iter", type=int, default=None, help="override SOLVER.MAX_ITER (smoke runs)")
    parser.add_argument(
        "--output",
        default=None,
        help="results markdown (default: benchmarks/results/lt_shapes_heads_<regime>.md; "
        "with --max-iter: <root>/<regime>/summary.md only)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="pre-trained regime: use this backbone checkpoint instead of running tools/pretrain_backbone.py",
    )
    parser.add_argument(
        "--trained-at",
        default=None,
        help="commit the runs under --root were trained at, when it is not this checkout's (recorded in the header)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    args = parser.parse_args(argv)
    regime = args.regime
    if args.heads is None:
        args.heads = HEADS[:3] + EXTRA_HEADS[regime] + HEADS[3:]
    if args.weights and regime != "pretrained":
        parser.error("--weights is for --regime pretrained")
    for head in args.heads:
        config_of(head, regime)  # fail before any training on a wrong name
    root = os.path.join(args.root, regime)

    start = time.time()
    if args.weights:
        weights = os.path.abspath(args.weights)
        args.opts = list(args.opts) + ["MODEL.WEIGHTS", weights]
    else:
        weights = ensure_pretrained(regime)
    runs: Dict[str, Dict[int, dict]] = {}
    for head in args.heads:
        iters = scheduled_iterations(head, args.max_iter, regime)
        for seed in args.seeds:
            run_dir = os.path.join(root, head, f"seed{seed}")
            summary = load_results(run_dir, iters)
            if summary is None and head in POSTHOC:
                trained = POSTHOC[head][0]
                trained_dir = os.path.join(root, trained, f"seed{seed}")
                if load_results(trained_dir, iters) is None:
                    run_one(trained, seed, trained_dir, args.max_iter, list(args.opts), regime)
                summary = evaluate_posthoc(head, seed, run_dir, trained_dir, iters, list(args.opts), regime)
            elif summary is None:
                summary = run_one(head, seed, run_dir, args.max_iter, list(args.opts), regime)
            else:
                print(f"[heads] {head} seed {seed}: finished earlier, skipped ({run_dir})", flush=True)
            runs.setdefault(head, {})[seed] = summary
    schedule = f"{args.max_iter} iterations" if args.max_iter is not None else "the lt_shapes_base.yaml schedule"
    label = f"{'pre-trained backbone' if regime == 'pretrained' else 'from scratch'}, {schedule}"
    if args.opts:
        label += f", overrides {' '.join(args.opts)}"
    markdown, table = summarise(runs, args.seeds, label)
    markdown += "\nTraining health (`lt/box_head_dead_fraction`, `lda/alpha`, `lda/acc_gap` in metrics.json):\n\n"
    markdown += training_health(root, list(runs), args.seeds)
    write_text_atomic(os.path.join(root, "summary.md"), markdown)
    write_text_atomic(os.path.join(root, "results.csv"), table)
    output = args.output
    if output is None and args.max_iter is None:
        output = os.path.join(REPO, "benchmarks", "results", f"lt_shapes_heads_{regime}.md")
    figure = plot_gains(
        runs, os.path.splitext(output)[0] + ".png" if output else os.path.join(root, "gains.png"), label
    )
    if output:
        from lt_detectron.data import default_lt_shapes_root

        opts = list(args.opts)
        given = [opts[i + 1] for i in range(len(opts) - 1) if opts[i] == "DATASETS.LT_SHAPES_DIR"]
        data_root = given[-1] if given else default_lt_shapes_root()
        fingerprint = lt_shapes_fingerprint(data_root)
        extra = {
            "data": f"lt_shapes in {data_root}: train json sha256 {fingerprint['lt_shapes_train.json'][:16]}, "
            f"pixels sha256 {fingerprint['pixels'][:16]} ({fingerprint['images']} images)",
            "runs": f"{root} (per run: demo_results.json, sweep.log; all runs: results.csv)",
        }
        if args.trained_at:
            extra["runs trained at"] = f"commit {args.trained_at} (this file assembled from their demo_results.json)"
        if weights and os.path.isfile(weights + ".json"):
            with open(weights + ".json") as f:
                meta = json.load(f)
            extra["pre-trained backbone"] = (
                f"{os.path.relpath(weights, REPO)} sha256 {meta['sha256'][:16]}, crop accuracy "
                f"{meta['accuracy_percent']}, settings {json.dumps(meta['settings'])}"
            )
        command = "python benchmarks/lt_shapes_heads.py " + " ".join(argv if argv is not None else sys.argv[1:])
        if figure:
            markdown += (
                f"\nPaired differences to the baseline, Δ AP against Δ APr:\n\n![gains]({os.path.basename(figure)})\n"
            )
        write_results(
            output,
            f"Long-tail heads on lt_shapes ({label.split(',')[0]})",
            command.strip(),
            markdown,
            threads="one process per run, torch threads from OMP_NUM_THREADS",
            extra=extra,
        )
    print("\n" + markdown)
    print(f"[heads] {sum(len(v) for v in runs.values())} runs, {(time.time() - start) / 60:.1f} min; {output or root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
