"""Memory of rank 0 in a 2-process CPU inference run over the demo's val set: sharded evaluation vs gathering.

    python benchmarks/sharded_inference_memory.py --weights output/demo_baseline/model_final.pth \\
        --lt-shapes-dir ~/.cache/lt_detectron/lt_shapes

Trains nothing: each mode is one run of `tools/train_net.py`'s entry point (`invoke_main`) in a fresh subprocess,

    tools/train_net.py --num-gpus 2 --eval-only --config-file configs/demo/lt_shapes_baseline.yaml \\
        MODEL.WEIGHTS <weights> MODEL.DEVICE cpu DATASETS.LT_SHAPES_DIR <dir> TEST.LT_EVAL_WORKERS 1 <mode keys>

with the function it launches in each process wrapped to measure that process (train_net's `main` runs unchanged):

- sharded:     TEST.LT_EVALUATOR fast, TEST.LT_EVAL_SHARDS True (the default): per-rank shard files, rank 0 joins them;
- fast-gather: TEST.LT_EVALUATOR fast, TEST.LT_EVAL_SHARDS False: Detectron2's `comm.gather` to rank 0;
- lvis-api:    TEST.LT_EVALUATOR lvis-api: Detectron2's `LVISEvaluator` (`comm.gather`, then lvis-api).

Memory, per rank: peak RSS of the whole run (getrusage ru_maxrss, the kernel's exact peak), RSS when `evaluate()` is
entered (after inference; the gather paths hold their predictions then) and the peak RSS from there to the end
(sampled every 10 ms from /proc/self/statm). TEST.LT_EVAL_WORKERS 1 keeps the fast evaluator's work in rank 0's
process, as lvis-api's is. The LVIS table of every mode is printed and compared, and so are the results files
(lvis_instances_results.json) the modes write.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from lt_detectron.utils.numerics import pin_cpu_numerics  # noqa: E402

pin_cpu_numerics()  # before torch loads, as tools/train_net.py: this script is the launched processes' main module

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from lt_detectron.utils.io import file_digest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import format_markdown_table, write_results  # noqa: E402

MODES = {
    "sharded": ["TEST.LT_EVALUATOR", "fast", "TEST.LT_EVAL_SHARDS", "True"],
    "fast-gather": ["TEST.LT_EVALUATOR", "fast", "TEST.LT_EVAL_SHARDS", "False"],
    "lvis-api": ["TEST.LT_EVALUATOR", "lvis-api"],
}
CONFIG = "configs/demo/lt_shapes_baseline.yaml"
OUTPUT = os.path.join(REPO, "benchmarks", "results", "sharded_inference_memory.md")
MIB = 1 << 20


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="trained weights of the demo config (model_final.pth)")
    p.add_argument("--lt-shapes-dir", default="", help="DATASETS.LT_SHAPES_DIR (default: the config's / env)")
    p.add_argument("--num-procs", type=int, default=2, help="processes (--num-gpus of train_net)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--work-dir", default="", help="OUTPUT_DIR parent of the runs (default: a temporary folder)")
    p.add_argument("--output", default=OUTPUT, help="the markdown report")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)  # internal: run one mode, report into this folder
    p.add_argument("train_net_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- in the launched processes ------------------------------------------------------------------------------


def _load_train_net():
    spec = importlib.util.spec_from_file_location("lt_tools_train_net", os.path.join(REPO, "tools", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["lt_tools_train_net"] = module
    spec.loader.exec_module(module)
    return module


class _RSSSampler(threading.Thread):
    """This process's RSS every `period` s: the peak since `mark()` (0 before)."""

    def __init__(self, period: float = 0.01):
        super().__init__(daemon=True)
        self._period = period
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.at_mark = 0
        self.peak_since_mark = 0
        self._marked = False
        self._stop_event = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def mark(self) -> None:
        if not self._marked:
            self.at_mark = self.peak_since_mark = self.rss()
            self._marked = True

    def run(self) -> None:
        while not self._stop_event.wait(self._period):
            if self._marked:
                self.peak_since_mark = max(self.peak_since_mark, self.rss())

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        if self._marked:
            self.peak_since_mark = max(self.peak_since_mark, self.rss())


def _measured_main(args: argparse.Namespace, report_dir: str) -> Any:
    """train_net's `main(args)`, with this process's memory and evaluate() time written to report_dir/rank{r}.json."""
    from detectron2.evaluation import LVISEvaluator
    from detectron2.utils import comm

    from lt_detectron.evaluation.detectron2_evaluator import FastLVISEvaluator

    train_net = _load_train_net()
    sampler = _RSSSampler()
    sampler.start()
    times: Dict[str, float] = {}

    def timed(evaluate):
        def wrapper(self):
            sampler.mark()  # the first entry (FastLVISEvaluator's gather path calls LVISEvaluator's evaluate inside)
            times.setdefault("evaluate_start", time.perf_counter())
            try:
                return evaluate(self)
            finally:
                times["evaluate_end"] = time.perf_counter()

        return wrapper

    LVISEvaluator.evaluate = timed(LVISEvaluator.evaluate)
    FastLVISEvaluator.evaluate = timed(FastLVISEvaluator.evaluate)
    start = time.perf_counter()
    results = train_net.main(args)
    total = time.perf_counter() - start
    sampler.stop()
    report = {
        "rank": comm.get_rank(),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "rss_at_evaluate": sampler.at_mark,
        "peak_from_evaluate": sampler.peak_since_mark,
        "evaluate_s": times.get("evaluate_end", 0.0) - times.get("evaluate_start", 0.0),
        "run_s": total,
        "results": json.loads(json.dumps(results)) if comm.is_main_process() else None,
    }
    with open(os.path.join(report_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump(report, f)
    return results


def run_child(report_dir: str, train_net_argv: List[str]) -> None:
    """One mode: train_net's invoke_main, launching `_measured_main` in place of its `main`."""
    train_net = _load_train_net()
    launch = train_net.launch

    def measured_launch(main_func, num_processes, *, args=(), **kwargs):
        launch(_measured_main, num_processes, args=(args[0], report_dir), **kwargs)

    train_net.launch = measured_launch
    status = train_net.invoke_main(train_net_argv)  # an exit status (2: a user error, said on stderr) or None
    if status:
        raise SystemExit(status)


# --- the driver ----------------------------------------------------------------------------------------------


def _sha256(path: str) -> str:
    return file_digest(path)


def run_mode(mode: str, args: argparse.Namespace, work: str) -> Dict[str, Any]:
    out = os.path.join(work, mode)
    report_dir = os.path.join(work, f"{mode}.reports")
    os.makedirs(report_dir, exist_ok=True)
    opts = ["MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu", "OUTPUT_DIR", out, "TEST.LT_EVAL_WORKERS", "1"]
    if args.lt_shapes_dir:
        opts += ["DATASETS.LT_SHAPES_DIR", args.lt_shapes_dir]
    train_net_argv = ["--num-gpus", str(args.num_procs), "--eval-only", "--config-file", CONFIG] + opts + MODES[mode]
    cmd = [sys.executable, os.path.abspath(__file__), "--weights", args.weights, "--child", report_dir, "--"]
    cmd += train_net_argv
    print(f"[{mode}] tools/train_net.py {' '.join(shlex.quote(a) for a in train_net_argv)}", flush=True)
    start = time.perf_counter()
    with open(os.path.join(work, f"{mode}.log"), "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"mode {mode} failed (exit {proc.returncode}); see {os.path.join(work, mode + '.log')}")
    ranks = []
    for r in range(args.num_procs):
        with open(os.path.join(report_dir, f"rank{r}.json")) as f:
            ranks.append(json.load(f))
    results_file = os.path.join(out, "inference", "lt_shapes_val", "lvis_instances_results.json")
    with open(results_file) as f:
        detections = len(json.load(f))
    return {
        "mode": mode,
        "ranks": ranks,
        "wall_s": time.perf_counter() - start,
        "results_bytes": os.path.getsize(results_file),
        "results_sha256": _sha256(results_file),
        "detections": detections,
    }


def report(runs: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    from lt_detectron.evaluation.report import format_lvis_table

    rows = []
    for run in runs:
        r0, others = run["ranks"][0], run["ranks"][1:]
        rows.append(
            [
                run["mode"],
                f"{r0['ru_maxrss'] / MIB:.0f}",
                f"{r0['rss_at_evaluate'] / MIB:.0f}",
                f"{r0['peak_from_evaluate'] / MIB:.0f}",
                f"{(r0['peak_from_evaluate'] - r0['rss_at_evaluate']) / MIB:+.0f}",
                " / ".join(f"{o['ru_maxrss'] / MIB:.0f}" for o in others),
                " / ".join(f"{o['rss_at_evaluate'] / MIB:.0f}" for o in others),
                f"{r0['evaluate_s']:.1f}",
                f"{run['wall_s']:.0f}",
            ]
        )
    header = [
        "mode",
        "rank 0 peak RSS (MiB)",
        "rank 0 RSS at evaluate() (MiB)",
        "rank 0 peak from evaluate() (MiB)",
        "rank 0 evaluate() increase (MiB)",
        "other ranks' peak RSS (MiB)",
        "other ranks' RSS at evaluate() (MiB)",
        "rank 0 evaluate() (s)",
        "run wall (s)",
    ]
    tables = [format_lvis_table(run["ranks"][0]["results"], title=f"**{run['mode']}**") for run in runs]
    same_tables = all(t.split("\n", 1)[1] == tables[0].split("\n", 1)[1] for t in tables)
    same_files = len({run["results_sha256"] for run in runs}) == 1
    lines = [
        f"{args.num_procs} CPU processes (gloo), `{CONFIG}`, lt_shapes_val (300 images), "
        f"{runs[0]['detections']:,} detections with RLE masks in the results file "
        f"({runs[0]['results_bytes'] / MIB:.1f} MiB). One run per mode, in this order; MiB = 2^20 bytes.",
        "",
        format_markdown_table(header, rows),
        "",
        f"Results files (lvis_instances_results.json) byte-identical across modes: {'yes' if same_files else 'NO'} "
        f"(sha256 {', '.join(run['mode'] + ' ' + run['results_sha256'][:12] for run in runs)}).",
        "",
        f"LVIS tables identical across modes: {'yes' if same_tables else 'NO'}.",
        "",
    ]
    for table in tables:
        lines += [table, ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.child:
        extra = args.train_net_args[1:] if args.train_net_args[:1] == ["--"] else args.train_net_args
        run_child(args.child, extra)
        return
    if not os.path.isfile(args.weights):
        raise SystemExit(f"--weights {args.weights!r} does not exist; pass the demo's model_final.pth (make demo).")
    args.weights = os.path.abspath(args.weights)
    work = args.work_dir or tempfile.mkdtemp(prefix="sharded_inference_memory_")
    runs = [run_mode(mode, args, work) for mode in args.modes]
    body = report(runs, args)
    print(body)
    command = "python benchmarks/sharded_inference_memory.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    threads = f"{args.num_procs} processes x {os.environ.get('OMP_NUM_THREADS', 'cores / processes')} torch threads"
    path = write_results(args.output, "Sharded vs gathered evaluation: memory of rank 0", command, body, threads)
    print(f"wrote {path}; runs in {work}")


if __name__ == "__main__":
    main()
