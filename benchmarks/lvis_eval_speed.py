"""LVIS evaluation end to end (results json -> summary): the fast evaluator vs hotcoco 1.3.0 vs lvis-api 0.5.3.

    python benchmarks/lvis_eval_speed.py --hotcoco-python /work/hotcoco-venv/bin/python     # 5,000 images
    python benchmarks/lvis_eval_speed.py --images 19809 --repeats 1 --lvis-api-mem-cap 12 \
        --hotcoco-python /work/hotcoco-venv/bin/python --output benchmarks/results/lvis_eval_speed_19809.md
    python benchmarks/lvis_eval_speed.py --images 300 --output /tmp/lvis_eval_speed.md      # a quick small run

The data are synthetic and deterministic (`lt_detectron.evaluation.synthetic`): LVIS-format ground truth with
long-tailed (Zipf) class popularity, polygon masks, federated negative and not-exhaustive lists, r/c/f groups; and a
detector-like results file in Detectron2's `lvis_instances_results.json` layout (box + RLE mask per detection).
They are generated once into --data-dir and reused (file names carry the parameters).

Each measurement is a fresh subprocess, from reading the json files to the summary, as Detectron2 uses lvis-api
(LVIS(gt), LVISResults(gt, results, max_dets=300), LVISEval.run), as `tools/evaluate_lvis.py` uses the fast
evaluator, and as hotcoco documents its lvis-api drop-in (hotcoco.LVIS, LVISResults(gt, path, max_dets=300),
LVISEval(...).run()). hotcoco is not a dependency of this project: --hotcoco-python names an interpreter that has
hotcoco==1.3.0 (e.g. a side venv: `python -m venv /work/hotcoco-venv && /work/hotcoco-venv/bin/pip install
hotcoco==1.3.0 "numpy<2"`); without it the hotcoco rows are left out.

The fast evaluator (1 worker and the default workers) and hotcoco (1 thread and its default, a thread per CPU:
RAYON_NUM_THREADS) run one after another, --repeats times in turn, on
an otherwise idle set of our processes (lvis-api runs first, alone); the table gives the median. CPU: user + system
seconds of the process and its workers (os.wait4). Wall: seconds on the clock from start to exit. Peak memory: the
peak RSS of a single-process run (getrusage); with workers, the peak of the process tree's summed PSS, sampled every
0.2 s (pages shared by forked workers counted once). Every summary number and per-class AP is compared with lvis-api's
(largest absolute difference). lvis-api takes minutes per iou type: --reuse-lvis-api takes its numbers from an
earlier run of this script on the same data files (checked by sha256) and the same lvis version, and the report
says so and when that run was; --lvis-api-mem-cap runs it under `prlimit --as` and reports where it stopped if the
cap ends it.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

IOU_TYPES = ("bbox", "segm")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--classes", type=int, default=1203)
    p.add_argument("--max-dets", type=int, default=300, help="detections per image are drawn in [min, max]")
    p.add_argument("--min-dets", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 0], help="fast evaluator's workers; 0 = default")
    p.add_argument("--iou-types", nargs="+", default=list(IOU_TYPES), choices=IOU_TYPES)
    p.add_argument("--repeats", type=int, default=3, help="runs of the fast evaluator and hotcoco (median reported)")
    p.add_argument("--hotcoco-python", default=None, help="a Python interpreter with hotcoco==1.3.0 installed")
    p.add_argument(
        "--baseline",
        default=None,
        help="also time the fast evaluator of this git revision (1 worker), e.g. the commit before a change",
    )
    p.add_argument(
        "--reuse-lvis-api",
        action="store_true",
        help="reuse lvis-api's numbers from an earlier run on the same data files (sha256-checked)",
    )
    p.add_argument("--no-lvis-api", action="store_true", help="leave lvis-api out (no differences reported)")
    p.add_argument("--lvis-api-mem-cap", type=float, default=None, help="GiB of address space for lvis-api (prlimit)")
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lt_detectron_lvis_bench"))
    p.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results", "lvis_eval_speed.md"))
    p.add_argument("--generate-only", action="store_true", help="write the data files and stop")
    p.add_argument("--run-one", choices=("lvis-api", "fast", "hotcoco"), help=argparse.SUPPRESS)  # one measurement
    p.add_argument("--iou", help=argparse.SUPPRESS)
    p.add_argument("--one-workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--gt", help=argparse.SUPPRESS)
    p.add_argument("--results", help=argparse.SUPPRESS)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    p.add_argument("--package-root", help=argparse.SUPPRESS)  # where to import lt_detectron from (--baseline)
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
# one measurement (runs in a subprocess; the hotcoco one in --hotcoco-python, without this project's packages)


def run_one(args) -> None:
    """Evaluate once and dump the summary, the precision of area 'all' ([T, R, K], for per-class AP) and counts."""
    import numpy as np

    if args.package_root:
        sys.path.insert(0, args.package_root)
    out: Dict[str, object] = {"backend": args.run_one, "iou": args.iou, "workers": args.one_workers}
    if args.run_one == "hotcoco":
        import hotcoco

        gt = hotcoco.LVIS(args.gt)
        dt = hotcoco.LVISResults(gt, args.results, max_dets=300)
        ev = hotcoco.LVISEval(gt, dt, args.iou)
        ev.run()
        summary = {k: float(v) for k, v in ev.get_results().items()}
        precision = np.asarray(ev.eval["precision"])
        precision = precision[..., 0] if precision.ndim == 5 else precision  # [T, R, K, A, M] -> [T, R, K, A]
        out["version"] = getattr(hotcoco, "__version__", "1.3.0")
    elif args.run_one == "lvis-api":
        # lvis 0.5.3 uses np.float, removed in NumPy 1.24 (what lt_detectron.data.patch_lvis_numpy_aliases fixes;
        # set here directly so that this process does not import Detectron2 and torch)
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
        summary = {k: float(v) for k, v in ev.get_results().items()}
        precision = np.asarray(ev.eval["precision"])
        out["detections"] = len(results)
    else:
        from lt_detectron.evaluation.fast_lvis import evaluate_detections
        from lt_detectron.evaluation.inputs import load_detections, load_ground_truth

        need = {"need_bbox": args.iou == "bbox", "need_segm": args.iou == "segm"}
        t0 = time.perf_counter()
        if args.one_workers == 1:  # one process, one thread
            gt = load_ground_truth(args.gt)
            t1 = time.perf_counter()
            dets = load_detections(args.results, gt, **need)
            reading = {"read ground truth": t1 - t0, "read results": time.perf_counter() - t1}
        else:  # as evaluate_lvis with more than one worker: the results file read while the ground truth loads
            from lt_detectron.evaluation.inputs import load_inputs

            gt, dets = load_inputs(args.gt, args.results, **need, concurrent=True)
            reading = {"read ground truth and results (concurrently)": time.perf_counter() - t0}
        stats: Dict[str, float] = {}
        res = evaluate_detections(gt, dets, args.iou, workers=args.one_workers or None, stats=stats)
        summary = res.summary_lvis_names()
        precision = res.precision
        out.update(stats)
        out["timings"] = {**reading, **res.timings}
    out["peak_rss_self"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    out["summary"] = summary
    np.save(args.dump + ".npy", precision[:, :, :, 0])
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


def _where(stderr: str) -> str:
    """Where a failed run stopped, from its traceback: the innermost frame, and the innermost one in lvis-api or in
    this script (the step it was in), e.g. ' in json/decoder.py:353 raw_decode, from lvis/lvis.py:27 __init__'."""
    import re

    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', stderr)
    if not frames:
        return ""
    short = [f"{'/'.join(path.split(os.sep)[-2:])}:{line} {func}" for path, line, func in frames]
    step = next((short[i] for i in range(len(frames) - 1, -1, -1)
                 if "/lvis/" in frames[i][0] or frames[i][0].endswith("lvis_eval_speed.py")), None)  # fmt: skip
    return f" in {short[-1]}" + (f", from {step}" if step and step != short[-1] else "")


class Measurement:
    """One backend run in a fresh subprocess; PSS of its process tree sampled every 0.2 s until it exits."""

    def __init__(self, args, files, backend: str, iou: str, workers: int = 1, python: Optional[str] = None,
                 root: Optional[str] = None):  # fmt: skip
        from lt_detectron.evaluation import default_workers

        self.backend, self.iou, self.workers = backend, iou, workers
        labels = {"fast": "fast (this repo)", "hotcoco": "hotcoco 1.3.0", "lvis-api": "lvis-api 0.5.3"}
        self.label = labels.get(backend, f"fast at {args.baseline}")
        # hotcoco's workers are threads (rayon, RAYON_NUM_THREADS); the default is one per CPU
        kind = " threads" if backend == "hotcoco" else ""
        self.workers_label = (
            "1"
            if backend in ("lvis-api", "baseline") or workers == 1
            else f"default ({default_workers()}{kind})"
            if workers == 0
            else f"{workers}{kind}"
        )
        self.dump = os.path.join(args.data_dir, f"run_{backend}_{iou}_{workers}.json")
        if os.path.exists(self.dump):
            os.remove(self.dump)
        self.cmd = [
            python or sys.executable,
            os.path.abspath(__file__),
            "--run-one",
            "fast" if backend == "baseline" else backend,
            "--iou",
            iou,
            "--one-workers",
            str(workers),
            "--gt",
            files["gt"],
            "--results",
            files["results"],
            "--dump",
            self.dump,
        ] + (["--package-root", root] if root else [])
        if backend == "lvis-api" and args.lvis_api_mem_cap:
            self.cmd = ["prlimit", f"--as={int(args.lvis_api_mem_cap * 2**30)}", "--"] + self.cmd
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("RAYON_NUM_THREADS", None)
        if backend == "hotcoco" and workers:
            env["RAYON_NUM_THREADS"] = str(workers)
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.peak = 0
        self.done = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, sum(_pss(p) for p in _tree_pids(self.proc.pid)))

    def finish(self, allow_fail: bool = False) -> Dict[str, object]:
        import numpy as np

        from lt_detectron.evaluation.fast_lvis import per_class_ap

        stderr = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        _, status, usage = os.wait4(self.proc.pid, 0)  # usage: the subprocess and its reaped workers
        wall = time.perf_counter() - self.start
        self.done.set()
        self.sampler.join()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        out: Dict[str, object] = {"cpu_seconds": usage.ru_utime + usage.ru_stime, "wall_seconds": wall}
        out["peak_pss"] = self.peak
        if self.proc.returncode != 0:
            last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or ["(no message)"]
            msg = f"{' '.join(self.cmd)} failed with exit status {self.proc.returncode}: {last[0]}"
            if not allow_fail:
                raise RuntimeError(msg)
            out["failed"] = f"exit status {self.proc.returncode} ({last[0][:120]}{_where(stderr)})"
            print(f"[bench] {self.iou:4s} {self.label:18s} FAILED after {wall:.0f} s: {out['failed']}", flush=True)
            return out
        with open(self.dump) as f:
            out.update(json.load(f))
        out["per_class_ap"] = per_class_ap(np.load(self.dump + ".npy")[:, :, :, None]).tolist()
        single = self.backend not in ("fast", "baseline") or self.workers == 1
        out["peak"] = out["peak_rss_self"] if single else self.peak
        print(
            f"[bench] {self.iou:4s} {self.label:18s} workers {self.workers_label:12s} cpu {out['cpu_seconds']:6.1f} s  "
            f"wall {wall:6.1f} s  peak {out['peak'] / 2**30:5.2f} GiB",
            flush=True,
        )
        return out


def _max_diff(a: Dict[str, object], b: Dict[str, object]) -> float:
    """Largest absolute difference of any summary number or per-class AP (inf if the defined classes differ)."""
    import numpy as np

    s = max(abs(a["summary"][k] - b["summary"][k]) for k in b["summary"])
    pa = np.array(a["per_class_ap"], dtype=float)
    pb = np.array(b["per_class_ap"], dtype=float)
    if not np.array_equal(np.isnan(pa), np.isnan(pb)):
        return float("inf")
    ok = ~np.isnan(pa)
    return float(max(s, np.max(np.abs(pa[ok] - pb[ok])) if ok.any() else 0.0))


def _lvis_api_cache(args, files, iou: str) -> str:
    return os.path.join(args.data_dir, f"lvis_api_{iou}_{os.path.basename(files['results'])}")


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


def _median(runs: List[Dict[str, object]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in runs))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_one:
        run_one(args)
        return 0
    os.makedirs(args.data_dir, exist_ok=True)
    files = generate(args)
    if args.generate_only:
        return 0
    import lvis

    if args.hotcoco_python and not os.path.exists(args.hotcoco_python):
        raise SystemExit(f"--hotcoco-python {args.hotcoco_python}: no such interpreter; create the side venv first")
    size = os.path.getsize(files["results"])
    from lt_detectron.utils import file_digest

    hashes = {k: file_digest(v) for k, v in files.items()} if not args.no_lvis_api else {}
    lvis_version = getattr(lvis, "__version__", "0.5.3")
    load_start = os.getloadavg()

    # lvis-api first and alone (one iou type at a time): minutes; or its numbers of an earlier run
    ref: Dict[str, Dict[str, object]] = {}
    if not args.no_lvis_api:
        for iou in args.iou_types:
            cache = _lvis_api_cache(args, files, iou)
            if args.reuse_lvis_api and os.path.isfile(cache):
                with open(cache) as f:
                    old = json.load(f)
                same_cap = "failed" not in old or old.get("mem_cap_gib") == args.lvis_api_mem_cap
                if old.get("hashes") == hashes and old.get("lvis_version") == lvis_version and same_cap:
                    old["reused"] = True
                    ref[iou] = old
        for iou in [i for i in args.iou_types if i not in ref]:  # one at a time: each holds several GiB
            m = Measurement(args, files, "lvis-api", iou)
            out = m.finish(allow_fail=True)
            out.update(
                hashes=hashes,
                lvis_version=lvis_version,
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                mem_cap_gib=args.lvis_api_mem_cap,
            )
            ref[m.iou] = out
            from lt_detectron.utils import atomic_write  # a stop under the memory cap is kept too, with its cap

            atomic_write(_lvis_api_cache(args, files, m.iou), lambda f, o=out: f.write(json.dumps(o).encode()))

    # the fast evaluator and hotcoco, one after another, in turn
    backends = [("fast", w, None, None) for w in args.workers]
    if args.baseline:  # the fast evaluator of another revision, from `git archive` (its lt_detectron package only)
        root = os.path.join(args.data_dir, f"baseline_{args.baseline}")
        if not os.path.isdir(os.path.join(root, "lt_detectron")):
            os.makedirs(root, exist_ok=True)
            archive = subprocess.run(["git", "-C", REPO, "archive", args.baseline, "lt_detectron"], check=True,
                                     capture_output=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
        backends.insert(0, ("baseline", 1, None, root))
    if args.hotcoco_python:  # as many threads as the fast evaluator's workers
        backends += [("hotcoco", w, args.hotcoco_python, None) for w in args.workers]
    runs: Dict[tuple, List[Dict[str, object]]] = {}
    labels: Dict[tuple, tuple] = {}
    for _ in range(args.repeats):
        for iou in args.iou_types:
            for backend, w, python, root in backends:
                m = Measurement(args, files, backend, iou, w, python, root)
                runs.setdefault((iou, backend, w), []).append(m.finish())
                labels[iou, backend, w] = (m.label, m.workers_label)
    load_end = os.getloadavg()

    first = next(r[0] for (i, b, w), r in runs.items() if b == "fast")
    lines = [
        "# LVIS evaluation speed: the fast evaluator vs hotcoco vs lvis-api",
        "",
        f"Command: `python benchmarks/lvis_eval_speed.py{' ' + ' '.join(argv) if argv else ''}` "
        "(written by the script).",
        "",
        f"Data: {args.images:,} images x {args.classes:,} classes (synthetic, seed {args.seed}), "
        f"{first['detections']:,} detections ({args.min_dets}-{args.max_dets} per image on images with any), results "
        f"file {size / 2**20:.0f} MiB in Detectron2's layout. Per-image top-300 keeps {first['after_cap']:,}; the "
        f"federated rule leaves {first['evaluated']:,} ({100 * first['evaluated'] / max(first['after_cap'], 1):.0f} %) "
        f"for matching.",
        "",
        f"Each number is the median of {args.repeats} run(s), from process start to exit (json files to summary); "
        "the fast evaluator and hotcoco ran one after another in turn, after lvis-api "
        "(which ran alone, one iou type at a time). CPU: user + system seconds of "
        "the process and its workers. Peak memory: peak RSS of a single process; with workers, the peak summed PSS of "
        "the process tree (sampled every 0.2 s). hotcoco's workers are threads (RAYON_NUM_THREADS; its default is "
        "one per CPU); each fast row is compared with the hotcoco row of the same number of workers. Largest "
        "difference: the largest absolute difference from lvis-api of any summary number (AP, AP50, AP75, APs/m/l, "
        "APr/c/f, AR, ARs/m/l) or per-class AP (fractions, not %).",
        "",
        "| iou type | evaluator | workers | CPU (s) | wall (s) | peak memory (GiB) | CPU / hotcoco's "
        "| wall / hotcoco's | largest difference from lvis-api |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for iou in args.iou_types:
        r = ref.get(iou)

        if r is not None:
            if "failed" in r:
                when = f"; reused: run of {r['date']}" if r.get("reused") else ""
                cells = [
                    f"stopped: {r['failed']}{when}",
                    f"{r['wall_seconds']:.0f} (until it stopped)",
                    f"{r['peak_pss'] / 2**30:.2f} (PSS when it stopped; cap {r.get('mem_cap_gib')} GiB)",
                ]
                lines.append(f"| {iou} | lvis-api 0.5.3 | 1 | {cells[0]} | {cells[1]} | {cells[2]} | | | |")
            else:
                tag = f" (reused: run of {r['date']})" if r.get("reused") else ""
                lines.append(
                    f"| {iou} | lvis-api 0.5.3{tag} | 1 | {r['cpu_seconds']:.1f} | {r['wall_seconds']:.1f} "
                    f"| {r['peak'] / 2**30:.2f} | | | reference |"
                )
                if r.get("reused"):
                    notes.append(
                        f"{iou} lvis-api row: reused from this script's run of {r['date']} on the same data "
                        f"files (sha256 checked), lvis {r['lvis_version']}; its time is that run's."
                    )
        for backend, w, _, _ in backends:
            rs = runs[iou, backend, w]
            label, wl = labels[iou, backend, w]
            cpu, wall = _median(rs, "cpu_seconds"), _median(rs, "wall_seconds")
            peak = max(float(x["peak"]) for x in rs)
            vs = ("", "")
            hot = runs.get((iou, "hotcoco", w if backend == "fast" else 1))  # the same number of workers
            if hot and backend != "hotcoco":
                vs = (f"{cpu / _median(hot, 'cpu_seconds'):.2f}", f"{wall / _median(hot, 'wall_seconds'):.2f}")
            diff = f"{_max_diff(rs[0], r):.1e}" if r is not None and "failed" not in r else "not compared"
            lines.append(
                f"| {iou} | {label} | {wl} | {cpu:.2f} | {wall:.2f} | {peak / 2**30:.2f} | {vs[0]} | {vs[1]} | {diff} |"
            )
    timing_lines = []
    for (iou, backend, w), rs in runs.items():
        if backend in ("fast", "baseline"):
            t = {k: statistics.median(x["timings"][k] for x in rs) for k in rs[0]["timings"]}
            timing_lines.append(
                f"- {iou}, {labels[iou, backend, w][0]}, workers {labels[iou, backend, w][1]}: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
            )
    lines += [
        "",
        *notes,
        "",
        "Phases of the fast evaluator (median wall seconds; select, evaluate, summarize are `result.timings`):",
        "",
        *timing_lines,
        "",
        f"Load average (1, 5, 15 min) at start {tuple(round(x, 1) for x in load_start)}, at end "
        f"{tuple(round(x, 1) for x in load_end)}: the machine is shared with other jobs, so absolute times vary "
        "between runs; the runs within one row group were made minutes apart, in turn.",
        "",
        "Environment:",
        "",
        *_environment(),
        f"- hotcoco: {args.hotcoco_python or 'not measured (no --hotcoco-python)'}",
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
