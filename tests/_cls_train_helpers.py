"""Shared by tests/test_cls_train_*.py: a tiny digits-LT config that trains in well under a second."""

from __future__ import annotations

from lt_detectron.classification.config import load_config

TINY = """
DATASET.NAME digits_lt
DATASET.ARGS.IMBALANCE_FACTOR 20
DATASET.ARGS.N_MAX 60
DATASET.ARGS.TEST_PER_CLASS 5
DATASET.ARGS.VAL_PER_CLASS 4
MODEL.NAME digits_mlp
SOLVER.EPOCHS 2
SOLVER.BATCH_SIZE 64
SOLVER.WARMUP_EPOCHS 1
SOLVER.STEPS (1,)
SOLVER.GAMMA 0.1
METHOD.META.DEV_SOURCE val
METHOD.META.DEV_BATCH_SIZE 8
METHOD.META.EPS_LR 500.0
METHOD.M2M.BETA 0.9
TEST.PLOTS False
LOG.TENSORBOARD False
LOG.PROGRESS_BAR False
CHECKPOINT_PERIOD 0
""".split()  # KEY VALUE pairs, Detectron2's override syntax


def tiny_cfg(output_dir, method: str = "ce", *overrides: str):
    """digits-LT with n_max 60 (about 200 training images, 4 batches of 64 per epoch), 2 epochs."""
    return load_config(None, [*TINY, "METHOD.NAME", method, "OUTPUT_DIR", str(output_dir), *overrides])
