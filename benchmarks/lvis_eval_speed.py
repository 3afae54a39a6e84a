"""LVIS evaluation end to end (results json -> printed table): lvis-api 0.5.3 vs the fast evaluator, side by side.

    python benchmarks/lvis_eval_speed.py                      # 5,000 images x 1,203 classes, up to 300 dets/image
    python benchmarks/lvis_eval_speed.py --images 300 --output /tmp/lvis_eval_speed.md   # a quick small run

The data are synthetic and deterministic (`lt_detectron.evaluation.synthetic`): LVIS-format ground truth with
long-tailed (Zipf) class popularity, polygon masks, federated negative and not-exhaustive lists, r/c/f groups; and a
detector-like results file in Detectron2's `lvis_instances_results.json` layout (box + RLE mask per detection).
They are generated once into --data-dir and reused (file names carry the parameters).

Each measurement runs in a fresh subprocess: the lvis-api runs (one per iou type) side by side, the fast runs (1 and
2 workers per iou type) one after another while they run. Time: CPU seconds of the process and its workers, and wall
clock from reading the json files to the summary table, as Detectron2
uses lvis-api (LVIS(gt), LVISResults(gt, results, max_dets=300), LVISEval.run) and as `tools/evaluate_lvis.py`
uses the fast evaluator. Memory: peak of the summed proportional set size (PSS, /proc/<pid>/smaps_rollup) over the
subprocess and its workers, sampled every second (pages shared by forked workers are counted once); and, as an upper
bound, the sum of each process's own peak RSS (getrusage; counts shared pages once per process). Both backends'
numbers are compared (largest difference of every summary number and per-class AP).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Dict, List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--classes", type=int, default=1203)
    p.add_argument("--max-dets", type=int, default=300, help="detections per image are drawn in [min, max]")
    p.add_argument("--min-dets", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--iou-types", nargs="+", default=["bbox", "segm"], choices=("bbox", "segm"))
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lt_detectron_lvis_bench"))
    p.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results", "lvis_eval_speed.md"))
    p.add_argument("--generate-only", action="store_true", help="write the data files and stop")
    p.add_argument(
        "--keep-other-rows",
        action="store_true",
        help="keep the rows of the iou types not measured now from the existing --output (marked as earlier runs)",
    )
    p.add_argument("--run-one", choices=("lvis-api", "fast"), help=argparse.SUPPRESS)  # internal: one measurement
    p.add_argument("--iou", help=argparse.SUPPRESS)
    p.add_argument("--one-workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--gt", help=argparse.SUPPRESS)
    p.add_argument("--results", help=argparse.SUPPRESS)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------
# data


def data_files(args) -> Dict[str, str]:
    tag = f"i{args.images}_c{args.classes}_d{args.min_dets}-{args.max_dets}_s{args.seed}"
    return {
        "gt": os.path.join(args.data_dir, f"gt_{tag}.json"),
        "results": os.path.join(args.data_dir, f"lvis_instances_results_{tag}.json"),
    }


def generate(args) -> Dict[str, str]:
    from lt_detectron.evaluation.synthetic import make_lvis_gt, make_lvis_results
    from lt_detectron.utils import atomic_write

    files = data_files(args)
    if all(os.path.exists(f) for f in files.values()):
        return files
    t0 = time.time()
    gt = make_lvis_gt(args.images, args.classes, seed=args.seed)
    res = make_lvis_results(gt, seed=args.seed, max_dets_per_image=args.max_dets, min_dets_per_image=args.min_dets)
    atomic_write(files["gt"], lambda f: f.write(json.dumps(gt).encode()))
    # Detectron2's LVISEvaluator writes json.dumps(list of instances_to_coco_json records); so do we
    atomic_write(files["results"], lambda f: f.write(json.dumps(res).encode()))
    print(f"[bench] generated {len(res):,} detections on {len(gt['images']):,} images in {time.time() - t0:.0f} s")
    return files


# ---------------------------------------------------------------------------------------------------------------
# one measurement (runs in a subprocess)


def _peak_rss_self() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_one(args) -> None:
    t0 = time.perf_counter()
    out: Dict[str, object] = {"backend": args.run_one, "iou": args.iou, "workers": args.one_workers}
    if args.run_one == "lvis-api":
        import numpy as np

        # lvis 0.5.3 uses np.float, removed in NumPy 1.24 (what lt_detectron.data.patch_lvis_numpy_aliases fixes;
        # set here directly so that this process does not import Detectron2 and torch, which the fast one does not)
        np.float = float  # type: ignore[attr-defined]
        from lvis import LVIS, LVISEval, LVISResults

        gt = LVIS(args.gt)
        with open(args.results) as f:
            results = json.load(f)
        if args.iou == "segm":  # Detectron2's _evaluate_predictions_on_lvis
            for r in results:
                r.pop("bbox", None)
        dt = LVISResults(gt, results, max_dets=300)
        ev = LVISEval(gt, dt, args.iou)
        ev.run()
        ev.print_results()
        from lt_detectron.evaluation.fast_lvis import per_class_ap

        summary = {k: float(v) for k, v in ev.get_results().items()}
        pc = per_class_ap(np.asarray(ev.eval["precision"])).tolist()
        out["detections"] = len(results)
        out["peak_rss_sum"] = _peak_rss_self()
    else:
        from lt_detectron.evaluation.fast_lvis import evaluate_detections
        from lt_detectron.evaluation.inputs import load_detections, load_ground_truth
        from lt_detectron.evaluation.report import format_table

        gt = load_ground_truth(args.gt)
        dets = load_detections(args.results, gt, need_bbox=args.iou == "bbox", need_segm=args.iou == "segm")
        stats: Dict[str, float] = {}
        res = evaluate_detections(gt, dets, args.iou, workers=args.one_workers, stats=stats)
        print(format_table({args.iou: res}))
        summary = res.summary_lvis_names()
        pc = res.per_class_ap.tolist()
        out.update(stats)
        out["timings"] = res.timings
        out["peak_rss_sum"] = _peak_rss_self() + int(stats.get("worker_peak_rss_sum", 0))
    out["seconds"] = time.perf_counter() - t0
    out["summary"] = summary
    out["per_class_ap"] = pc
    with open(args.dump, "w") as f:
        json.dump(out, f)


# ---------------------------------------------------------------------------------------------------------------
# the parent: subprocesses, memory sampling, report


def _tree_pids(root: int) -> List[int]:
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        for path in glob.glob(f"/proc/{pid}/task/*/children"):
            try:
                with open(path) as f:
                    stack.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return pids


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Measurement:
    """One backend run in a fresh subprocess; PSS of its process tree sampled every second until it exits."""

    def __init__(self, args, files, backend: str, iou: str, workers: int):
        self.label = backend if backend == "lvis-api" else f"fast, {workers} worker(s)"
        self.iou = iou
        self.dump = os.path.join(args.data_dir, f"run_{backend}_{iou}_{workers}.json")
        self.cmd = [sys.executable, os.path.abspath(__file__), "--run-one", backend, "--iou", iou, "--one-workers",
                    str(workers), "--gt", files["gt"], "--results", files["results"], "--dump", self.dump]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL)
        self.peak = 0
        self.done = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self) -> None:
        # PSS reads walk the page tables: once a second keeps the sampler's own cost small
        while not self.done.wait(1.0):
            self.peak = max(self.peak, sum(_pss(p) for p in _tree_pids(self.proc.pid)))

    def finish(self) -> Dict[str, object]:
        _, status, usage = os.wait4(self.proc.pid, 0)  # usage: the subprocess and its reaped workers
        wall = time.perf_counter() - self.start
        self.done.set()
        self.sampler.join()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd)} failed with exit status {self.proc.returncode}")
        with open(self.dump) as f:
            out = json.load(f)
        out["peak_pss"] = self.peak
        out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        out["wall_seconds"] = wall
        print(f"[bench] {self.iou:4s} {self.label:20s} cpu {out['cpu_seconds']:7.1f} s  wall {wall:7.1f} s  "
              f"peak PSS {self.peak / 2**30:5.2f} GiB  sum of peak RSS {out['peak_rss_sum'] / 2**30:5.2f} GiB",
              flush=True)  # fmt: skip
        return out


def _max_diff(a: Dict[str, object], b: Dict[str, object]) -> float:
    import numpy as np

    s = max(abs(a["summary"][k] - b["summary"][k]) for k in b["summary"])
    pa = np.array(a["per_class_ap"], dtype=float)
    pb = np.array(b["per_class_ap"], dtype=float)
    if not np.array_equal(np.isnan(pa), np.isnan(pb)):
        return float("inf")
    ok = ~np.isnan(pa)
    return float(max(s, np.max(np.abs(pa[ok] - pb[ok])) if ok.any() else 0.0))


def _lock_hash() -> str:
    locks = sorted(glob.glob(os.path.join(REPO, "requirements", "*.lock")) + glob.glob(os.path.join(REPO, "*.lock")))
    if not locks:
        return "no lock file"
    h = hashlib.sha256()
    for path in locks:
        with open(path, "rb") as f:
            h.update(f.read())
    return f"sha256 {h.hexdigest()[:16]} of {', '.join(os.path.relpath(p, REPO) for p in locks)}"


def _environment() -> List[str]:
    import numpy

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    import faster_coco_eval
    import lvis

    from lt_detectron.utils.provenance import git_commit

    commit = git_commit(REPO)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return [
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; commit {commit}",
        f"- machine: {cpu}; {os.cpu_count()} cores; {platform.platform()}",
        f"- python {platform.python_version()}, torch {torch_version}, numpy {numpy.__version__}, "
        f"lvis {getattr(lvis, '__version__', '0.5.3')}, faster-coco-eval {faster_coco_eval.__version__}",
        f"- lock: {_lock_hash()}",
        f"- OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
    ]


def _earlier_rows(path: str, skip: Sequence[str]) -> List[str]:
    """Table rows of the existing report for iou types not in `skip`, each marked with that report's date/commit."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        text = f.read()
    when = next((ln[len("- date: ") :] for ln in text.splitlines() if ln.startswith("- date: ")), "date unknown")
    when = when.split(" (rows", 1)[0]
    rows = []
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if ln.startswith("| ") and cells[0] in ("bbox", "segm") and cells[0] not in skip:
            cells[0] = f"{cells[0]} (earlier run: {when})" if "earlier run" not in cells[0] else cells[0]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_one:
        run_one(args)
        return 0
    os.makedirs(args.data_dir, exist_ok=True)
    files = generate(args)
    if args.generate_only:
        return 0
    n_dets = os.path.getsize(files["results"])
    load_start = os.getloadavg()
    # lvis-api runs take minutes: they run side by side (one per iou type), and the fast runs one after another
    # meanwhile; CPU time (the process and its workers) is the comparison that sharing the cores does not change.
    refs = {iou: Measurement(args, files, "lvis-api", iou, 1) for iou in args.iou_types}
    fasts = {}
    for iou in args.iou_types:
        for w in args.workers:
            fasts[iou, w] = Measurement(args, files, "fast", iou, w).finish()
    ref_out = {iou: m.finish() for iou, m in refs.items()}
    rows = [(iou, w, ref_out[iou], fasts[iou, w], _max_diff(fasts[iou, w], ref_out[iou])) for iou, w in fasts]
    load_end = os.getloadavg()
    first = rows[0][3]
    lines = [
        "# LVIS evaluation speed: lvis-api vs the fast evaluator",
        "",
        f"Command: `python benchmarks/lvis_eval_speed.py{' ' + ' '.join(argv) if argv else ''}` "
        f"(written by the script).",
        "",
        f"Data: {args.images:,} images x {args.classes:,} classes (synthetic, seed {args.seed}), "
        f"{first['detections']:,} detections ({args.min_dets}-{args.max_dets} per image on images with any), results "
        f"file {n_dets / 2**20:.0f} MiB in Detectron2's layout. Per-image top-300 keeps {first['after_cap']:,}; the "
        f"federated rule (class neither annotated in the image nor in its negative list) leaves "
        f"{first['evaluated']:,} ({100 * first['evaluated'] / max(first['after_cap'], 1):.0f} %) for matching "
        f"(lvis-api skips the same ones).",
        "",
        "End to end: from the json files to the summary table, each in a fresh process. CPU: user + system seconds "
        "of the process and its workers (os.wait4). Wall: seconds on the clock; the lvis-api runs (one per iou type) "
        "ran side by side, and the fast runs one after another while they ran, on a machine shared with other jobs, so "
        "wall times include waiting for the cores. Peak memory: summed PSS of the process tree (sampled every second); "
        "in brackets the sum of each process's own peak RSS (an upper bound: forked workers count shared pages again).",
        "",
        "| iou type | workers | lvis-api CPU (s) | fast CPU (s) | CPU speed-up | lvis-api wall (s) | fast wall (s) "
        "| wall speed-up | lvis-api peak (GiB) | fast peak (GiB) | memory ratio | largest difference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    kept = _earlier_rows(args.output, args.iou_types) if args.keep_other_rows else []
    lines += kept
    for iou, w, ref, fast, diff in rows:
        lines.append(
            f"| {iou} | {w} | {ref['cpu_seconds']:.1f} | {fast['cpu_seconds']:.1f} "
            f"| {ref['cpu_seconds'] / fast['cpu_seconds']:.1f}x | {ref['wall_seconds']:.0f} "
            f"| {fast['wall_seconds']:.0f} | {ref['wall_seconds'] / fast['wall_seconds']:.1f}x "
            f"| {ref['peak_pss'] / 2**30:.2f} ({ref['peak_rss_sum'] / 2**30:.2f}) "
            f"| {fast['peak_pss'] / 2**30:.2f} ({fast['peak_rss_sum'] / 2**30:.2f}) "
            f"| {fast['peak_pss'] / max(ref['peak_pss'], 1):.2f} | {diff:.1e} |"
        )
    if kept:
        lines += [
            "",
            f"Rows marked 'earlier run' are copied from the previous report (this run measured "
            f"{', '.join(args.iou_types)} only, with --keep-other-rows); their lvis-api and fast runs were made then, "
            f"on the code of that report's commit.",
        ]
    lines += [
        "",
        "lvis-api is measured once per iou type; each fast row is divided by that same run. With 2 workers the CPU "
        "time includes the pool's start and the work the workers repeat (each builds its chunks' records); on a "
        "machine with free cores its wall time is what drops.",
        "",
        f"Load average (1, 5, 15 min) at start {tuple(round(x, 1) for x in load_start)}, at end "
        f"{tuple(round(x, 1) for x in load_end)}: the machine is shared, so absolute times vary between runs; "
        f"the ratios compare runs made minutes apart.",
        "",
        "Environment:",
        "",
        *_environment(),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from lt_detectron.utils import atomic_write

    atomic_write(args.output, lambda f: f.write(text.encode()))
    print(f"[bench] written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
