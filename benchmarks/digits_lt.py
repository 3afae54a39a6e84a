"""Every classification method on digits-LT (scikit-learn's 8x8 digits, imbalance factor 20), several seeds, CPU.

    python benchmarks/digits_lt.py                      # 5 seeds, 2 worker processes, a few minutes on 2 cores
    python benchmarks/digits_lt.py --seeds 1 --quick    # smoke test: 2 epochs per run

Each seed changes both the long-tailed subset / test split (DATASET.ARGS.SEED) and the training seed. Runs use the
shipped configs configs/classification/digits_lt_<method>.yaml unchanged except for seeds and output folders; M2m's
frozen classifier g is the CE run of the same seed. Prints (and writes as markdown) bACC, few-shot accuracy and
ECE as mean ± std over seeds, with each method's bACC and few-shot difference to CE paired by seed (95% t-interval),
and writes them with the environment (benchmarks/_results.py) to benchmarks/results/digits_lt.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before torch loads; the spawned workers inherit the pinned kernels (docs/results.md)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import format_markdown_table, format_mean_std, paired_difference, write_results  # noqa: E402

CONFIGS = os.path.join(REPO, "configs", "classification")

# (row name, config method, extra overrides). CE first: it is the reference and M2m's g.
VARIANTS: list[tuple[str, str, list[str]]] = [
    ("ce", "ce", []),
    ("cb_ce", "cb_ce", []),
    ("focal", "focal", []),
    ("cb_focal", "cb_focal", []),
    ("ldam", "ldam", []),
    ("ldam_drw", "ldam_drw", []),
    ("balanced_softmax", "balanced_softmax", []),
    ("pc_softmax", "pc_softmax", []),
    ("lade", "lade", []),
    ("lda", "lda", []),
    ("meta_ce", "meta_ce", []),
    ("meta_ce (L2RW)", "meta_ce", ["METHOD.META.L2RW", "True"]),
    ("meta_focal", "meta_focal", []),
    ("meta_ldam", "meta_ldam", []),
    ("m2m", "m2m", []),
]
QUICK = ["SOLVER.EPOCHS", "2", "SOLVER.STEPS", "(1,)", "SOLVER.WARMUP_EPOCHS", "0", "METHOD.M2M.START_EPOCH", "1"]


def _run(task: tuple[str, str, list[str], int, str, list[str]]) -> tuple[str, int, dict, float]:
    """One training run in a worker process (single-threaded torch)."""
    name, method, extra, seed, root, common = task
    import torch

    torch.set_num_threads(1)
    from lt_detectron.classification.config import load_config
    from lt_detectron.classification.trainer import FINAL_WEIGHTS, ClassificationTrainer

    out = os.path.join(root, f"{name.replace(' ', '_').replace('(', '').replace(')', '')}_seed{seed}")
    overrides = [  # KEY VALUE pairs
        *("SEED", str(seed), "DATASET.ARGS.SEED", str(seed), "OUTPUT_DIR", out),
        *("TEST.PLOTS", "False", "LOG.TENSORBOARD", "False", "LOG.PROGRESS_BAR", "False", "CHECKPOINT_PERIOD", "0"),
        *common,
        *extra,
    ]
    if method == "m2m":
        overrides += ["METHOD.M2M.G_CHECKPOINT", os.path.join(root, f"ce_seed{seed}", FINAL_WEIGHTS)]
    cfg = load_config(os.path.join(CONFIGS, f"digits_lt_{method}.yaml"), overrides)
    start = time.perf_counter()
    try:
        result = ClassificationTrainer(cfg).train(resume=False)
    except FloatingPointError as err:  # a diverged run is a result too: reported, not fatal
        print(f"  {name} seed {seed} diverged: {err}", flush=True)
        return name, seed, None, time.perf_counter() - start
    return name, seed, {k: result[k] for k in ("bacc", "few", "ece", "top1")}, time.perf_counter() - start


def _ok_seeds(runs: dict[int, dict], seeds: list[int]) -> list[int]:
    return [s for s in seeds if runs.get(s) is not None]  # diverged runs left out


def format_table(results: dict[str, dict[int, dict]], times: dict[str, list[float]], seeds: list[int]) -> str:
    """Mean ± sample std over seeds; each method's bACC and few-shot gain over CE as a paired 95 % t-interval."""
    ce = results["ce"]
    header = [
        "method",
        "bACC (%)",
        "Δ bACC vs CE [95% CI]",
        "few-shot acc (%)",
        "Δ few-shot vs CE [95% CI]",
        "ECE (%)",
        "s / run",
    ]
    rows = []
    for name, _, _ in VARIANTS:
        if name not in results:
            continue
        runs = results[name]
        ok = _ok_seeds(runs, seeds)
        note = f" ({len(seeds) - len(ok)} of {len(seeds)} seeds diverged)" if len(ok) < len(seeds) else ""
        deltas = []
        for key in ("bacc", "few"):
            if name == "ce":
                deltas.append("—")
                continue
            diff = paired_difference({s: runs[s][key] for s in ok}, {s: ce[s][key] for s in _ok_seeds(ce, seeds)})
            deltas.append(diff.format() + (" *" if diff.excludes_zero else ""))
        rows.append(
            [
                name + note,
                format_mean_std(runs[s]["bacc"] for s in ok),
                deltas[0],
                format_mean_std(runs[s]["few"] for s in ok),
                deltas[1],
                format_mean_std(runs[s]["ece"] for s in ok),
                f"{statistics.mean(times[name]):.1f}",
            ]
        )
    return format_markdown_table(header, rows)


def format_findings(results: dict[str, dict[int, dict]], seeds: list[int]) -> str:
    """One sentence per metric: which methods' paired 95 % interval against CE excludes zero, and in which direction."""
    ce = {s: results["ce"][s] for s in _ok_seeds(results["ce"], seeds)}
    lines = []
    for key, label in (("bacc", "bACC"), ("few", "few-shot accuracy")):
        verdicts: dict[str, list[str]] = {"gain": [], "loss": [], "no difference shown": []}
        for name, _, _ in VARIANTS:
            if name == "ce" or name not in results:
                continue
            runs = results[name]
            diff = paired_difference({s: runs[s][key] for s in _ok_seeds(runs, seeds)}, {s: ce[s][key] for s in ce})
            if diff.n >= 2:
                verdicts[diff.verdict].append(f"{name} ({diff.format()})" if diff.excludes_zero else name)
        lines.append(
            f"- {label}: gain over CE (95% interval above zero): {', '.join(verdicts['gain']) or 'none'}; "
            f"loss (interval below zero): {', '.join(verdicts['loss']) or 'none'}; "
            f"no difference shown: {', '.join(verdicts['no difference shown']) or 'none'}."
        )
    return "\n".join(lines)


def format_per_seed(results: dict[str, dict[int, dict]], seeds: list[int]) -> str:
    """bACC of every run, so the pairing can be checked and the table recomputed."""
    rows = []
    for name, _, _ in VARIANTS:
        if name in results:
            runs = results[name]
            rows.append([name] + [f"{runs[s]['bacc']:.2f}" if runs.get(s) else "diverged" for s in seeds])
    return format_markdown_table(["method"] + [f"seed {s}" for s in seeds], rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--quick", action="store_true", help="2 epochs per run (smoke test, not a result)")
    parser.add_argument("--methods", nargs="*", default=None, help="subset of row names (ce is always run)")
    parser.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results", "digits_lt.md"))
    parser.add_argument("--keep-runs", default="", help="keep the run folders here (default: a deleted temp dir)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    variants = [v for v in VARIANTS if args.methods is None or v[0] in args.methods or v[0] == "ce"]
    seeds = list(range(args.seeds))
    common = QUICK if args.quick else []
    root = args.keep_runs or tempfile.mkdtemp(prefix="digits_lt_bench_")
    os.makedirs(root, exist_ok=True)
    results: dict[str, dict[int, dict]] = {}
    times: dict[str, list[float]] = {}
    started = time.perf_counter()
    try:
        ctx = mp.get_context("spawn")  # fresh interpreters: no inherited torch thread pools
        pool = ctx.Pool(max(1, args.workers))
        try:
            first = [t for t in variants if t[0] == "ce"]
            rest = [t for t in variants if t[0] != "ce"]
            for phase in (first, rest):  # CE first: its weights are M2m's g
                tasks = [(n, m, e, s, root, common) for n, m, e in phase for s in seeds]
                for name, seed, metrics, seconds in pool.imap_unordered(_run, tasks):
                    results.setdefault(name, {})[seed] = metrics
                    times.setdefault(name, []).append(seconds)
                    if metrics is not None:
                        print(
                            f"  {name:18s} seed {seed}: bACC {metrics['bacc']:.1f}  few {metrics['few']:.1f}  "
                            f"ECE {metrics['ece']:.1f}  ({seconds:.1f} s)",
                            flush=True,
                        )
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    finally:
        if not args.keep_runs:
            shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - started
    quick = ", QUICK (2 epochs): not a result" if args.quick else ""
    few_seeds = "; fewer than 3 seeds: not a result" if len(seeds) < 3 else ""
    body = "\n\n".join(
        [
            f"digits-LT (IF 20, n_c = 120..6, 40 test images per class), {len(seeds)} seed(s){quick}{few_seeds}; "
            f"{total / 60:.1f} min with {args.workers} worker(s). Each seed changes the long-tailed subset, the test "
            "split and the training seed. Mean ± sample std over seeds; Δ columns: mean of the per-seed differences "
            "to CE with its two-sided 95% Student-t interval; * marks an interval that excludes zero.",
            format_table(results, times, seeds),
            "Findings (per-comparison intervals, no multiple-comparison correction):\n\n"
            + format_findings(results, seeds),
            "Per-seed bACC (%):",
            format_per_seed(results, seeds),
        ]
    )
    command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} python benchmarks/digits_lt.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    text = write_results(
        args.output,
        "digits-LT: every classification method, paired by seed",
        command.strip(),
        body,
        threads=f"{args.workers} worker processes x 1 torch thread",
    )
    print("\n" + text)
    return text


if __name__ == "__main__":
    main()
