"""`add_lt_config(cfg)`: every lt-detectron config key, defined and documented in this one place.

Defaults follow ../shared/METHODS.md; where a paper leaves a choice open, the choice is a key here.
The comments below are the config reference; the README points here.
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_lt_config"]


def add_lt_config(cfg: CN) -> CN:
    """Add the `MODEL.LT` namespace (and dataset/test keys) to a Detectron2 config. Idempotent."""
    if "LT" in cfg.MODEL:
        return cfg
    _C = cfg
    was_frozen = _C.is_frozen()
    _C.defrost()

    _C.MODEL.LT = CN()
    # Box classifier of the ROI heads (LTROIHeads):
    #   "softmax"          Detectron2's stock FastRCNNOutputLayers, unchanged (USE_SIGMOID_CE / USE_FED_LOSS work).
    #   "cb"               effective-number weighted softmax CE (METHODS §1-2).
    #   "focal"/"cb_focal" softmax focal loss, optionally with CB weights (METHODS §2).
    #   "ldam"             LDAM margins (METHODS §2), optional DRW.
    #   "balanced_softmax" LADE-CE / logit adjustment (METHODS §2, §4).
    #   "lade"             LADE-CE + alpha * LADER (METHODS §4).
    #   "lda"              FgBg + unbalanced + balanced classifiers, projection head, risk balancer (METHODS §5).
    _C.MODEL.LT.BOX_CLASSIFIER = "softmax"
    # Per-class training counts n_c for the box classifier: "instance_count" (METHODS default for detection)
    # or "image_count". Read once at build time from the training datasets' metadata or annotations.
    _C.MODEL.LT.CLASS_COUNT_SOURCE = "instance_count"
    # What to do with a class that never occurs in training (n_c = 0): "error" or "warn" (the class is
    # excluded from the weighting with a warning naming it; METHODS §1).
    _C.MODEL.LT.ZERO_COUNT_POLICY = "error"
    # Target prior p_t used at inference by the prior-aware heads ("balanced_softmax", "lade", "lda" is
    # unaffected): "uniform" (default, METHODS §3), "source" (the training prior), or a path to a json
    # file holding a list of C non-negative numbers (normalised on load).
    _C.MODEL.LT.TEST_TARGET_PRIOR = "uniform"

    # Class-balanced weights (METHODS §1). BETA None = (N-1)/N (seed 000); Cui et al. use 0.9999.
    _C.MODEL.LT.CB = CN()
    _C.MODEL.LT.CB.BETA = None

    # Focal loss (METHODS §2).
    _C.MODEL.LT.FOCAL = CN()
    _C.MODEL.LT.FOCAL.GAMMA = 2.0
    _C.MODEL.LT.FOCAL.FORM = "softmax"  # "softmax" | "sigmoid"

    # LDAM (METHODS §2).
    _C.MODEL.LT.LDAM = CN()
    _C.MODEL.LT.LDAM.MAX_MARGIN = 0.5
    _C.MODEL.LT.LDAM.SCALE = 30.0
    # Deferred re-weighting: iteration at which CB weights (beta 0.9999) switch on; -1 disables DRW.
    _C.MODEL.LT.LDAM.DRW_START_ITER = -1
    _C.MODEL.LT.LDAM.DRW_BETA = 0.9999

    # LADE (METHODS §4).
    _C.MODEL.LT.LADE = CN()
    _C.MODEL.LT.LADE.ALPHA = 0.1
    _C.MODEL.LT.LADE.LAMBDA = 0.1
    _C.MODEL.LT.LADE.IMPORTANCE = "label"  # "label" (paper eq. 13) | "column" (authors' public code)

    # LDA (METHODS §5). LVIS recipe values: GAMMA 1.5, LAMBDA_D 0.1.
    _C.MODEL.LT.LDA = CN()
    _C.MODEL.LT.LDA.GAMMA = 1.5
    # Risk-balancer window K in mini-batches; 0 = max(1, N / (n_min * B)).
    _C.MODEL.LT.LDA.WINDOW = 100
    _C.MODEL.LT.LDA.LAMBDA_U = 1.0
    _C.MODEL.LT.LDA.LAMBDA_B = 2.0
    _C.MODEL.LT.LDA.LAMBDA_D = 0.1
    _C.MODEL.LT.LDA.MARGIN = 1.0
    _C.MODEL.LT.LDA.PROJ_HEAD = "linear"  # "linear" (d->128) | "mlp" (d->512->128)
    _C.MODEL.LT.LDA.PROJ_DIM = 128
    # Paper eq. 8: weight each inter-class pair by (w_c + w_c'), normalised over off-diagonal pairs.
    _C.MODEL.LT.LDA.PAIR_WEIGHTS = False

    # Meta-learned per-example conditional weights (METHODS §6, seed 000 Algorithm 1).
    _C.MODEL.LT.META = CN()
    _C.MODEL.LT.META.ENABLED = False
    # Stage 1 length t1: plain training until this iteration; the meta stage runs after it.
    _C.MODEL.LT.META.START_ITER = 0
    # Virtual-step learning rate eta and conditional-weight step tau.
    _C.MODEL.LT.META.INNER_LR = 0.01
    _C.MODEL.LT.META.EPS_LR = 1.0
    # Class weights w_y under the conditional weights: effective number with this beta (None = (N-1)/N).
    _C.MODEL.LT.META.BETA = None
    # Held-out class-balanced development set: at most k training images per class, and the dev batch size.
    _C.MODEL.LT.META.DEV_PER_CLASS = 2
    _C.MODEL.LT.META.DEV_BATCH_SIZE = 2
    # "classifier": meta-gradient through the box predictor only (features detached), "full": whole model.
    _C.MODEL.LT.META.MODE = "classifier"
    # L2RW ablation: clip eps at 0 and normalise the weights per batch.
    _C.MODEL.LT.META.L2RW = False

    # Synthetic long-tailed dataset (lt_shapes): where it is generated on first use. "" = the
    # LT_SHAPES_DIR environment variable, else ~/.cache/lt_detectron/lt_shapes.
    _C.DATASETS.LT_SHAPES_DIR = ""

    if was_frozen:
        _C.freeze()
    return _C
