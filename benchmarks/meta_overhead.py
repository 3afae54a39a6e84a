"""Iteration-time overhead of meta weighting (classifier-only mode) on the lt_shapes demo model.

The method: docs/methods.md#meta-weights-in-detection.

One model, one optimizer and one data stream; iterations alternate between plain training and a meta step
(ABBA order, so neither mode always runs first), and the script prints the median seconds per iteration of
each and their ratio (target: <= 1.5x). The timed region is what IterationTimer measures: the
hook's before_step (dev batch through backbone and box head), the training step, and after_step.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/meta_overhead.py --iters 20
    .venv/bin/python benchmarks/meta_overhead.py --config configs/demo/lt_shapes_meta.yaml SOLVER.IMS_PER_BATCH 4
    .venv/bin/python benchmarks/meta_overhead.py --device cuda --iters 30 --warmup 6

On CUDA each timed iteration is bracketed by torch.cuda.synchronize() (wall clock).
"""

from __future__ import annotations

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before torch loads: the same CPU kernels on every x86 machine (docs/results.md)

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Sequence

import torch
from detectron2.engine import DefaultTrainer
from detectron2.utils.events import EventStorage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lt_detectron.engine import build_cfg, register_lt_components  # noqa: E402
from lt_detectron.engine.meta_hook import MetaWeightingHook, MetaWeightingTrainerMixin  # noqa: E402
from lt_detectron.utils import atomic_write  # noqa: E402

NEVER = 1 << 62


class _BenchTrainer(MetaWeightingTrainerMixin, DefaultTrainer):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "demo", "lt_shapes_meta.yaml"))
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per mode")
    parser.add_argument("--warmup", type=int, default=4, help="untimed iterations first (both modes)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="sets MODEL.DEVICE")
    parser.add_argument("--out", default=None, help="also write the result lines to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA device; run on a GPU machine")
    device = torch.device(args.device)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    register_lt_components()
    cfg = build_cfg(args.config, ["MODEL.DEVICE", args.device] + list(args.opts))
    cfg.MODEL.LT.META.ENABLED = True
    cfg.MODEL.LT.META.MODE = "classifier"
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OUTPUT_DIR = tempfile.mkdtemp(prefix="meta_overhead_")
    torch.manual_seed(0)
    trainer = _BenchTrainer(cfg)
    hook = next(h for h in trainer._hooks if isinstance(h, MetaWeightingHook))

    times = {False: [], True: []}
    pattern = [False, True, True, False]  # ABBA
    total = args.warmup + 2 * args.iters
    with EventStorage(0) as storage:
        trainer.storage = storage
        for it in range(total):
            meta_on = pattern[it % 4]
            hook.reweighter.start_iter = 0 if meta_on else NEVER
            trainer.iter = storage.iter = it
            synchronize()
            start = time.perf_counter()
            hook.before_step()
            trainer.run_step()
            hook.after_step()
            synchronize()
            elapsed = time.perf_counter() - start
            if it >= args.warmup:
                times[meta_on].append(elapsed)
            storage.step()

    plain, meta = statistics.median(times[False]), statistics.median(times[True])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    text = (
        f"config: {os.path.relpath(args.config, REPO)}  device: {device} ({where})  torch: {torch.__version__}  "
        f"images/batch: {cfg.SOLVER.IMS_PER_BATCH}  dev images/batch: {cfg.MODEL.LT.META.DEV_BATCH_SIZE}\n"
        f"median s/iter  plain: {plain:.4f} (n={len(times[False])})  meta: {meta:.4f} (n={len(times[True])})\n"
        f"meta/plain iteration-time ratio: {meta / plain:.3f}x  (target <= 1.5x)\n"
    )
    print(text, end="")
    if args.out:
        atomic_write(args.out, lambda f: f.write(text), binary=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
