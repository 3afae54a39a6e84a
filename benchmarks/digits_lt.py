"""Every classification method on digits-LT (scikit-learn's 8x8 digits, imbalance factor 20), several seeds, CPU.

    python benchmarks/digits_lt.py                      # 5 seeds, 2 worker processes, a few minutes on 2 cores
    python benchmarks/digits_lt.py --seeds 1 --quick    # smoke test: 2 epochs per run

Each seed changes both the long-tailed subset / test split (DATASET.ARGS.SEED) and the training seed. Runs use the
shipped configs configs/classification/digits_lt_<method>.yaml unchanged except for seeds and output folders; M2m's
frozen classifier g is the CE run of the same seed. Prints (and writes as markdown) bACC, few-shot accuracy and
ECE as mean ± std over seeds, with each method's bACC difference to CE measured on the same seeds.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    ("meta_ce (L2RW)", "meta_ce", ["METHOD.META.L2RW=True"]),
    ("meta_focal", "meta_focal", []),
    ("meta_ldam", "meta_ldam", []),
    ("m2m", "m2m", []),
]
QUICK = ["SOLVER.EPOCHS=2", "SOLVER.STEPS=(1,)", "SOLVER.WARMUP_EPOCHS=0", "METHOD.M2M.START_EPOCH=1"]


def _run(task: tuple[str, str, list[str], int, str, list[str]]) -> tuple[str, int, dict, float]:
    """One training run in a worker process (single-threaded torch)."""
    name, method, extra, seed, root, common = task
    import torch

    torch.set_num_threads(1)
    from lt_detectron.classification.config import load_config
    from lt_detectron.classification.trainer import FINAL_WEIGHTS, ClassificationTrainer

    out = os.path.join(root, f"{name.replace(' ', '_').replace('(', '').replace(')', '')}_seed{seed}")
    overrides = [
        f"SEED={seed}",
        f"DATASET.ARGS.SEED={seed}",
        f"OUTPUT_DIR={out}",
        "TEST.PLOTS=False",
        "LOG.TENSORBOARD=False",
        "LOG.PROGRESS_BAR=False",
        "CHECKPOINT_PERIOD=0",
        *common,
        *extra,
    ]
    if method == "m2m":
        overrides.append(f"METHOD.M2M.G_CHECKPOINT={os.path.join(root, f'ce_seed{seed}', FINAL_WEIGHTS)}")
    cfg = load_config(os.path.join(CONFIGS, f"digits_lt_{method}.yaml"), overrides)
    start = time.perf_counter()
    try:
        result = ClassificationTrainer(cfg).train(resume=False)
    except FloatingPointError as err:  # a diverged run is a result too: reported, not fatal
        print(f"  {name} seed {seed} diverged: {err}", flush=True)
        return name, seed, None, time.perf_counter() - start
    return name, seed, {k: result[k] for k in ("bacc", "few", "ece", "top1")}, time.perf_counter() - start


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def format_table(results: dict[str, dict[int, dict]], times: dict[str, list[float]], seeds: list[int]) -> str:
    ce = results["ce"]
    lines = [
        "| method | bACC (%) | Δ bACC vs CE (same seeds) | few-shot acc (%) | ECE (%) | s / run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, _, _ in VARIANTS:
        if name not in results:
            continue
        runs = results[name]
        ok = [s for s in seeds if runs.get(s) is not None and ce.get(s) is not None]  # diverged runs left out
        delta = [runs[s]["bacc"] - ce[s]["bacc"] for s in ok] if name != "ce" else None
        sign = "+" if delta and statistics.mean(delta) >= 0 else ""
        note = f" ({len(seeds) - len(ok)} of {len(seeds)} seeds diverged)" if len(ok) < len(seeds) else ""
        lines.append(
            f"| {name}{note} | {_mean_std([runs[s]['bacc'] for s in ok])} | "
            f"{'—' if delta is None else sign + _mean_std(delta)} | "
            f"{_mean_std([runs[s]['few'] for s in ok])} | {_mean_std([runs[s]['ece'] for s in ok])} | "
            f"{statistics.mean(times[name]):.1f} |"
        )
    return "\n".join(lines)


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
    table = format_table(results, times, seeds)
    header = (
        f"digits-LT (IF 20, n_c = 120..6, 40 test images per class), {len(seeds)} seed(s)"
        f"{', QUICK (2 epochs): not a result' if args.quick else ''}; {total / 60:.1f} min with "
        f"{args.workers} worker(s).\nCommand: python benchmarks/digits_lt.py {' '.join(argv or sys.argv[1:])}"
    )
    text = f"{header}\n\n{table}\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = f"{args.output}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.output)
    return text


if __name__ == "__main__":
    main()
