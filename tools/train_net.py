#!/usr/bin/env python
"""Train or evaluate an lt-detectron model (Detectron2-style entry point).

    python tools/train_net.py --config-file configs/demo/lt_shapes_baseline.yaml
    python tools/train_net.py --config-file configs/demo/lt_shapes_baseline.yaml --eval-only \
        MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --num-gpus 8 --config-file configs/lvis_baseline.yaml SOLVER.IMS_PER_BATCH 16
    python tools/train_net.py --num-gpus 2 --config-file configs/demo/lt_shapes_lda.yaml   # 2 CPU processes

--num-gpus N starts N processes: one per GPU with NCCL, or N CPU processes with gloo when MODEL.DEVICE is cpu
(docs/distributed.md). Everything but argument handling lives in lt_detectron.engine.
"""

from __future__ import annotations

import os
import sys

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # first, before torch loads: pinned CPU kernels (docs/results.md), sleeping OpenMP threads

import detectron2.utils.comm as comm  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402

from lt_detectron.engine import AtomicDetectionCheckpointer, LTTrainer, build_cfg, prepare_launch, setup_cfg  # noqa: E402
from lt_detectron.engine.distributed import launch  # noqa: E402


def _eval_weights(cfg) -> str:
    """The checkpoint --eval-only evaluates: MODEL.WEIGHTS, else OUTPUT_DIR's last checkpoint; fail clearly if none."""
    if cfg.MODEL.WEIGHTS:
        return cfg.MODEL.WEIGHTS
    tag = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            return os.path.join(cfg.OUTPUT_DIR, f.read().strip())
    raise FileNotFoundError(
        f"--eval-only needs trained weights: MODEL.WEIGHTS is empty and {tag} does not exist. "
        f"Pass MODEL.WEIGHTS path/to/model_final.pth, or OUTPUT_DIR of a finished training run."
    )


def build_trainer(cfg, resume: bool) -> LTTrainer:
    """The trainer `main` runs: built, then resumed from OUTPUT_DIR's last checkpoint or loaded from MODEL.WEIGHTS."""
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = LTTrainer.build_model(cfg)
        AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(_eval_weights(cfg), resume=False)
        results = LTTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    return build_trainer(cfg, resume=args.resume).train()


def invoke_main(argv: list[str] | None = None) -> None:
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args, file=sys.stderr)
    cfg = build_cfg(args.config_file, args.opts)
    # Datasets checked and class statistics computed once here, not in every launched process.
    args.class_stats_file = prepare_launch(args, cfg)
    # The model's device picks the backend: gloo processes for a CPU model, Detectron2's NCCL launch for GPUs.
    device = cfg.MODEL.DEVICE
    launch(
        main,
        args.num_gpus,
        device=device,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
