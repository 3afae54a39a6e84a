"""Training iteration time of tools/train_net.py against tools/demo.py on the same config, on busy cores.

    python benchmarks/entry_point_speed.py                 # 2 busy processes, 2 alternating pairs of 40 iterations
    python benchmarks/entry_point_speed.py --busy 0 --iters 20 --pairs 1 --output /tmp/speed.md   # a quick look

Both entry points train configs/demo/lt_shapes_baseline.yaml (same data, same seed) in fresh processes while
`--busy` processes spin on the cores (what another user's job does to a shared machine). Each run's iteration times
come from its metrics.json (Detectron2's `time` of the logged iterations after the first `--skip`); the demo is
stopped once its last training iteration is logged (its evaluation is not part of the comparison). Runs alternate
train_net / demo, so a change in load hits both. Before issue 22, train_net.py let OpenMP threads spin-wait
(OMP_WAIT_POLICY unset) and ran 7-15x slower than the demo here; every entry point now sets the same process policy
(lt_detectron/utils/numerics.py). Writes benchmarks/results/entry_point_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def _iteration_times(metrics: str, skip: int) -> List[float]:
    times = []
    with open(metrics) as f:
        for line in f:
            record = json.loads(line)
            if "time" in record and record.get("iteration", 0) >= skip:
                times.append(float(record["time"]))
    return times


def _last_iteration(metrics: str) -> int:
    if not os.path.isfile(metrics):
        return -1
    with open(metrics) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    return max((r.get("iteration", -1) for r in lines), default=-1)


def _run(kind: str, iters: int, skip: int, out: str, timeout: float) -> List[float]:
    """One training run of `iters` iterations; its per-iteration seconds after the warm-up."""
    opts = ["SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", "100000"]
    if kind == "train_net":
        cmd = [sys.executable, "tools/train_net.py", "--config-file", CONFIG, *opts, "DATASETS.TEST", "()"]
        cmd += ["OUTPUT_DIR", out]
    else:
        cmd = [sys.executable, "tools/demo.py", "--config", CONFIG, "--output", out, *opts]
    metrics = os.path.join(out, "metrics.json")
    with open(os.path.join(tempfile.gettempdir(), f"entry_point_speed_{kind}.log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        start = time.time()
        while proc.poll() is None and _last_iteration(metrics) < iters - 1:
            if time.time() - start > timeout:
                proc.kill()
                raise RuntimeError(f"{kind} did not finish {iters} iterations in {timeout:.0f} s (log: {log.name})")
            time.sleep(1.0)
        if proc.poll() is None:  # the demo, done training: its evaluation is not measured
            proc.terminate()
            proc.wait()
        elif proc.returncode:
            raise RuntimeError(f"{kind} failed with status {proc.returncode} (log: {log.name})")
    return _iteration_times(metrics, skip)


def main(argv: List[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside the runs (default: 2)")
    parser.add_argument("--iters", type=int, default=40, help="training iterations per run (default: 40)")
    parser.add_argument("--skip", type=int, default=10, help="warm-up iterations left out (default: 10)")
    parser.add_argument("--pairs", type=int, default=2, help="alternating train_net / demo pairs (default: 2)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run before it counts as failed")
    parser.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results", "entry_point_speed.md"))
    args = parser.parse_args(argv)
    if args.iters <= args.skip + 1:
        parser.error(f"--iters ({args.iters}) must exceed --skip ({args.skip}) + 1")

    spinners = [
        subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=args.timeout * 2 * args.pairs)])
        for _ in range(args.busy)
    ]
    runs = {"train_net": [], "demo": []}
    try:
        for pair in range(args.pairs):
            for kind in runs:
                with tempfile.TemporaryDirectory(prefix=f"speed_{kind}_") as out:
                    times = _run(kind, args.iters, args.skip, out, args.timeout)
                runs[kind].append(statistics.median(times))
                print(f"pair {pair + 1}/{args.pairs}, {kind}: median {runs[kind][-1]:.3f} s/iter", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _results import format_markdown_table, write_results

    medians = {k: statistics.median(v) for k, v in runs.items()}
    rows = [
        [
            f"`tools/{k}.py`",
            ", ".join(f"{t:.3f}" for t in v),
            f"{medians[k]:.3f}",
            f"{medians[k] / medians['demo']:.2f}x",
        ]
        for k, v in runs.items()  # noqa: E501
    ]
    body = "\n".join(
        [
            f"configs/demo/lt_shapes_baseline.yaml, {args.iters} iterations per run (median of Detectron2's logged "
            f"iteration `time` from iteration {args.skip} on), {args.busy} spinning processes on the cores, "
            f"{args.pairs} alternating pairs; torch threads as each entry point sets them (OMP_NUM_THREADS "
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}).",
            "",
            format_markdown_table(["entry point", "median s/iter per run", "median", "vs demo.py"], rows),
        ]
    )
    command = " ".join(["python benchmarks/entry_point_speed.py", *(sys.argv[1:] if argv is None else argv)])
    text = write_results(args.output, "Iteration time: tools/train_net.py against tools/demo.py", command, body)
    print(text)
    return text


if __name__ == "__main__":
    main()
