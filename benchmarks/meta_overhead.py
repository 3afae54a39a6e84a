"""Iteration-time overhead of meta weighting (classifier-only mode) on the lt_shapes demo model.

The method: docs/methods.md#meta-weights-in-detection.

One model, one optimizer and one data stream; iterations alternate between plain training and a meta step
(ABBA order, so neither mode always runs first), and the script prints the median seconds per iteration of
each and their ratio (target: <= 1.5x). The timed region is what IterationTimer measures: the
hook's before_step (dev batch through backbone and box head), the training step, and after_step.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/meta_overhead.py --iters 20
    .venv/bin/python benchmarks/meta_overhead.py --config configs/demo/lt_shapes_meta.yaml SOLVER.IMS_PER_BATCH 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from detectron2.engine import DefaultTrainer
from detectron2.utils.events import EventStorage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lt_detectron.engine import build_cfg, register_lt_components  # noqa: E402
from lt_detectron.engine.meta_hook import MetaWeightingHook, MetaWeightingTrainerMixin  # noqa: E402

NEVER = 1 << 62


class _BenchTrainer(MetaWeightingTrainerMixin, DefaultTrainer):
    pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "demo", "lt_shapes_meta.yaml"))
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per mode")
    parser.add_argument("--warmup", type=int, default=4, help="untimed iterations first (both modes)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)

    register_lt_components()
    cfg = build_cfg(args.config, args.opts)
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
            start = time.perf_counter()
            hook.before_step()
            trainer.run_step()
            hook.after_step()
            elapsed = time.perf_counter() - start
            if it >= args.warmup:
                times[meta_on].append(elapsed)
            storage.step()

    plain, meta = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"config: {args.config}  images/batch: {cfg.SOLVER.IMS_PER_BATCH}  dev images/batch: "
        f"{cfg.MODEL.LT.META.DEV_BATCH_SIZE}  threads: {torch.get_num_threads()}"
    )
    print(f"median s/iter  plain: {plain:.4f} (n={len(times[False])})  meta: {meta:.4f} (n={len(times[True])})")
    print(f"meta/plain iteration-time ratio: {meta / plain:.3f}x  (target <= 1.5x)")


if __name__ == "__main__":
    main()
