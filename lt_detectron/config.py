"""`add_lt_config(cfg)`: every lt-detectron config key, defined and documented in this one place.

Paper defaults come from the records next to each implementation (`lt_detectron.losses.*_DEFAULTS`,
`lt_detectron.meta.engine.META_DEFAULTS`), shared with the classification config; where detection deliberately
differs, the comment says why. Where a paper leaves a choice open, the choice is a key here.
The comments below are the config reference; the README and docs/methods.md point here.
"""

from __future__ import annotations

import os
from typing import Any, Dict

import yaml
from detectron2.config import CfgNode as CN

from lt_detectron.losses import (
    EQLV2_DEFAULTS,
    FOCAL_DEFAULTS,
    LADE_DEFAULTS,
    LDA_LVIS_DEFAULTS,
    LDAM_DEFAULTS,
    SEESAW_DEFAULTS,
)
from lt_detectron.meta.engine import META_DEFAULTS
from lt_detectron.utils.config_keys import unknown_key, unknown_key_hint

__all__ = ["add_lt_config", "merge_config_file", "load_config_dict", "MODEL_ZOO_PREFIX", "DETECTION_DEVIATIONS"]

# Detection keys whose default deliberately differs from the method's defaults record, and why (the comments at each
# key below say more). tests/test_records.py fails on any other difference between a record and these defaults.
DETECTION_DEVIATIONS = {
    "MODEL.LT.CB.BETA": "0.9, measured: 0.9999 or (N-1)/N made frequent RoIs weigh ~1 % of a background RoI",
    "MODEL.LT.META.START": "START_ITER 0: the meta stage at once, as the hook was first written (not measured)",
    "MODEL.LT.META.INNER_LR": "0.01 fixed instead of the optimizer's lr: kept so that existing runs reproduce",
    "MODEL.LT.META.DEV_PER_CLASS": "2: LVIS rare classes have 1-10 training images",
    "MODEL.LT.META.DEV_BATCH_SIZE": "2 images: each dev image costs a backbone forward per step",
    "MODEL.LT.META.MODE": "classifier: the detection hook implements the classifier mode only",
}


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
    #   "cb"               effective-number weighted softmax CE (Cui et al., CVPR 2019, arXiv:1901.05555).
    #   "focal"/"cb_focal" softmax focal loss, optionally with CB weights (Lin et al., ICCV 2017,
    #                      arXiv:1708.02002).
    #   "ldam"             LDAM margins, optional DRW (Cao et al., NeurIPS 2019, arXiv:1906.07413).
    #   "pc_softmax"       stock softmax CE training, PC Softmax with TEST_TARGET_PRIOR at test (Hong et al., CVPR
    #                      2021, arXiv:2012.00321); same weights as "softmax", so a trained baseline can be evaluated
    #                      post hoc.
    #   "balanced_softmax" LADE-CE / logit adjustment (Ren et al., NeurIPS 2020, arXiv:2007.10740).
    #   "lade"             LADE-CE + alpha * LADER (Hong et al. 2021).
    #   "lda"              FgBg + unbalanced + balanced classifiers, projection head, risk balancer (Peng et al.,
    #                      ACM MM 2021, arXiv:2110.02686).
    #   "seesaw"           Seesaw loss with a C+2 classifier (Wang et al., CVPR 2021, arXiv:2008.10032).
    #   "eqlv2"            EQLv2, sigmoid with gradient-driven re-weighting (Tan et al., CVPR 2021, arXiv:2012.08548).
    _C.MODEL.LT.BOX_CLASSIFIER = "softmax"
    # Per-class training counts n_c for the box classifier: "instance_count" (the default for detection,
    # docs/methods.md#notation), "image_count", or "sampled_instance_count": the instances the model sees per pass
    # under repeat factor sampling (each image's instances times its repeat factor, Detectron2's factors with
    # DATALOADER.REPEAT_THRESHOLD; equal to instance_count without that sampler). Read once at build time from the
    # training datasets' metadata or annotations (the sampled counts parse the annotations once more).
    _C.MODEL.LT.CLASS_COUNT_SOURCE = "instance_count"
    # What to do with a class that never occurs in training (n_c = 0): "error" or "warn" (the class is
    # excluded from the weighting with a warning naming it; docs/methods.md#class-weights).
    _C.MODEL.LT.ZERO_COUNT_POLICY = "error"
    # Target prior p_t used at inference by the prior-aware heads ("pc_softmax", "balanced_softmax", "lade"; "lda" is
    # unaffected): "uniform" (default, docs/methods.md#pc-softmax), "source" (the training prior), or a path to a json
    # file holding a list of C non-negative numbers (normalised on load).
    _C.MODEL.LT.TEST_TARGET_PRIOR = "uniform"
    # Background class of the C+1-way box classifiers ("cb", "focal", "cb_focal", "ldam",
    # "balanced_softmax", "lade"); the papers do not define one for detection
    # (docs/methods.md#the-background-class). The background's source prior is
    # this value, or the RoI sampler's background fraction 1 - ROI_HEADS.POSITIVE_FRACTION when -1; foreground
    # classes share the rest in proportion to n_c. At inference the target prior keeps the background's mass
    # and spreads the foreground mass by TEST_TARGET_PRIOR. CB / focal weights: foreground class_weights(n)
    # (normalised to sum C), background 1.0. LDAM: background margin 0. "lda" has its own FgBg classifier.
    _C.MODEL.LT.BACKGROUND_PRIOR = -1.0

    # Class-balanced weights (docs/methods.md#class-weights). BETA None = (N-1)/N (Jamal et al. 2020); Cui et al.
    # use 0.9999 (CB_DEFAULTS.beta, the classification default).
    _C.MODEL.LT.CB = CN()
    # Detection default 0.9, a measured choice: with a background class of weight 1, (N-1)/N makes a frequent RoI
    # weigh ~1 % of a background RoI and the cb head calls frequent objects background (lt_shapes: bbox APf 7.6 vs
    # 59.4); 0.9 trains in both lt_shapes regimes (benchmarks/results/lt_shapes_heads*.md).
    _C.MODEL.LT.CB.BETA = 0.9

    # Focal loss (docs/methods.md#focal-loss).
    _C.MODEL.LT.FOCAL = CN()
    _C.MODEL.LT.FOCAL.GAMMA = FOCAL_DEFAULTS.gamma
    _C.MODEL.LT.FOCAL.FORM = FOCAL_DEFAULTS.form  # "softmax" | "sigmoid"

    # LDAM (docs/methods.md#ldam-and-deferred-re-weighting).
    _C.MODEL.LT.LDAM = CN()
    _C.MODEL.LT.LDAM.MAX_MARGIN = LDAM_DEFAULTS.max_margin
    _C.MODEL.LT.LDAM.SCALE = LDAM_DEFAULTS.scale
    # Deferred re-weighting: iteration at which CB weights (beta 0.9999) switch on; -1 disables DRW.
    _C.MODEL.LT.LDAM.DRW_START_ITER = -1
    _C.MODEL.LT.LDAM.DRW_BETA = LDAM_DEFAULTS.drw_beta
    # LDAM's normalised (cosine) last layer, as Cao et al.: logits cos(w_c, x) in [-1, 1], so
    # SCALE sets the logit range at training and test. False = Detectron2's plain Linear cls_score.
    _C.MODEL.LT.LDAM.COSINE_CLASSIFIER = LDAM_DEFAULTS.cosine_classifier

    # LADE (docs/methods.md#lade).
    _C.MODEL.LT.LADE = CN()
    _C.MODEL.LT.LADE.ALPHA = LADE_DEFAULTS.alpha
    _C.MODEL.LT.LADE.LAMBDA = LADE_DEFAULTS.lam
    _C.MODEL.LT.LADE.IMPORTANCE = LADE_DEFAULTS.importance  # "label" (paper eq. 13) | "column" (authors' code)

    # LDA (docs/methods.md#lda). The paper's own LVIS recipe (LDA_LVIS_DEFAULTS; Peng et al. 2021 §4.2): GAMMA 1.5,
    # LAMBDA_D 0.1, the rest as in
    # classification (LDA_DEFAULTS).
    _C.MODEL.LT.LDA = CN()
    lda = LDA_LVIS_DEFAULTS
    _C.MODEL.LT.LDA.GAMMA = lda.gamma
    # Risk-balancer window K in mini-batches; 0 = max(1, N / (n_min * B)), B = expected foreground RoIs per batch
    # (IMS_PER_BATCH * ROI_HEADS.BATCH_SIZE_PER_IMAGE * POSITIVE_FRACTION) in detection.
    _C.MODEL.LT.LDA.WINDOW = lda.window
    _C.MODEL.LT.LDA.LAMBDA_U = lda.lambda_u
    _C.MODEL.LT.LDA.LAMBDA_B = lda.lambda_b
    _C.MODEL.LT.LDA.LAMBDA_D = lda.lambda_d
    _C.MODEL.LT.LDA.MARGIN = lda.margin
    _C.MODEL.LT.LDA.PROJ_HEAD = lda.proj_head  # "linear" (d->128) | "mlp" (d->512->128)
    _C.MODEL.LT.LDA.PROJ_DIM = lda.proj_dim
    # Paper eq. 8: weight each inter-class pair by (w_c + w_c'), normalised over off-diagonal pairs.
    _C.MODEL.LT.LDA.PAIR_WEIGHTS = lda.pair_weights
    # Whether L_b's gradient reaches the shared box-head feature (True: the paper, all classifiers share it) or only
    # trains the balanced classifier on a stopped-gradient feature (False). Default False, a measured choice: with the
    # paper's shared gradient and lambda_b 2 the box head lost 99 % of its units within 150 iterations on lt_shapes,
    # also with L_u normalised as below; it trains only with lambda_b <= ~0.02 (configs/demo/lt_shapes_lda_shared.yaml;
    # benchmarks/results/lt_shapes_lda_probe.md, docs/methods.md#lda-box-head).
    _C.MODEL.LT.LDA.BALANCED_FEATURE_GRAD = lda.balanced_feature_grad
    # Normaliser of the unbalanced loss L_u (the paper is silent): "sampled" divides its sum by all sampled RoIs,
    # foreground and background, as Detectron2's and mmdetection's classification losses do; "foreground" is a mean
    # over foreground RoIs, which gives each foreground RoI ~1/fg-fraction (4.7x on lt_shapes) the stock head's
    # gradient and killed up to 59 % of the box-head units (benchmarks/results/lt_shapes_lda_probe.md).
    _C.MODEL.LT.LDA.UNBALANCED_NORM = lda.unbalanced_norm
    # a_t's accuracy window: "zero_filled" (the public code: empty slots count as 0, a_t ramps up over WINDOW
    # batches) or "recorded" (average of the batches seen so far).
    _C.MODEL.LT.LDA.ALPHA_RAMP = lda.alpha_ramp
    # >= 0: a constant a_t instead of the adaptive one (the paper's grid-search control); < 0: adaptive (eq. 6).
    _C.MODEL.LT.LDA.FIXED_ALPHA = lda.fixed_alpha

    # Cosine (normalised-linear) box classifier, SCALE * cos(w_c, x), for the heads with one linear cls_score (softmax,
    # cb, focal, cb_focal, pc_softmax, balanced_softmax, lade, seesaw, eqlv2): the classifier of most strong LVIS
    # recipes (Seesaw, Wang et al. CVPR 2021, uses temperature 20). LDAM has its own (LDAM.COSINE_CLASSIFIER).
    _C.MODEL.LT.COSINE = CN()
    _C.MODEL.LT.COSINE.ENABLED = False
    _C.MODEL.LT.COSINE.SCALE = SEESAW_DEFAULTS.cosine_scale

    # Seesaw loss (Wang et al., CVPR 2021, arXiv:2008.10032; docs/methods.md#seesaw-loss): C+2 outputs (classes and
    # a foreground/background pair); mitigation exponent P, compensation exponent Q.
    _C.MODEL.LT.SEESAW = CN()
    _C.MODEL.LT.SEESAW.P = SEESAW_DEFAULTS.p
    _C.MODEL.LT.SEESAW.Q = SEESAW_DEFAULTS.q
    _C.MODEL.LT.SEESAW.EPS = SEESAW_DEFAULTS.eps

    # EQLv2 (Tan et al., CVPR 2021, arXiv:2012.08548; docs/methods.md#eqlv2): sigmoid over C+1 columns, gradient-
    # statistics re-weighting f(r) = 1 / (1 + exp(-GAMMA (r - MU))), positive weight 1 + ALPHA (1 - f(r)).
    _C.MODEL.LT.EQLV2 = CN()
    _C.MODEL.LT.EQLV2.GAMMA = EQLV2_DEFAULTS.gamma
    _C.MODEL.LT.EQLV2.MU = EQLV2_DEFAULTS.mu
    _C.MODEL.LT.EQLV2.ALPHA = EQLV2_DEFAULTS.alpha

    # Meta-learned per-example conditional weights (Jamal et al., CVPR 2020,
    # arXiv:2003.10780, Algorithm 1; docs/methods.md#meta-learned-conditional-weights).
    _C.MODEL.LT.META = CN()
    _C.MODEL.LT.META.ENABLED = False
    # Stage 1 length t1: plain training until this iteration; the meta stage runs after it.
    # Negative: the first lr decay, min(SOLVER.STEPS) (Jamal et al. 2020 §5.3; lt_detectron.meta.stage_two_start).
    # Differs from META_DEFAULTS.start (-1, the paper's rule, and the classification default): 0 starts the meta
    # stage at once, as the hook was first written; no measurement behind it (the lt_shapes demo config sets -1).
    _C.MODEL.LT.META.START_ITER = 0
    # Virtual-step learning rate eta (<= 0: the optimizer's current lr) and conditional-weight step tau.
    # Differs from META_DEFAULTS.inner_lr (-1, follow the optimizer): a fixed 0.01, not a measured choice; kept so
    # existing detection runs reproduce.
    _C.MODEL.LT.META.INNER_LR = 0.01
    _C.MODEL.LT.META.EPS_LR = META_DEFAULTS.eps_lr
    # Class weights w_y under the conditional weights: effective number with this beta (None = (N-1)/N).
    _C.MODEL.LT.META.BETA = META_DEFAULTS.beta
    # Held-out class-balanced development set: at most k training images per class, and the dev batch size.
    # Differ from META_DEFAULTS (10 per class, batches of 100 images, CIFAR-LT): a detection image holds many RoIs,
    # LVIS rare classes have 1-10 training images (k = 2 is the paper's iNat18 choice), and one dev image costs a
    # backbone forward per step (benchmarks/results/meta_overhead.md: 8 train + 2 dev images per iteration).
    _C.MODEL.LT.META.DEV_PER_CLASS = 2
    _C.MODEL.LT.META.DEV_BATCH_SIZE = 2
    # "classifier": meta-gradient through the box predictor only (features detached), "full": whole model.
    # Differs from META_DEFAULTS.mode ("full"): the Detectron2 hook implements only the classifier mode (the
    # paper's cheaper Places-LT variant), so the meta step costs one extra backbone forward on the dev batch.
    _C.MODEL.LT.META.MODE = "classifier"
    # L2RW ablation: clip eps at 0 and normalise the weights per batch.
    _C.MODEL.LT.META.L2RW = META_DEFAULTS.l2rw
    # Registered datasets used as the dev set D as they are. Empty (default): hold DEV_PER_CLASS images per
    # class out of DATASETS.TRAIN (lt_detectron.engine.prepare_meta_datasets registers the two parts
    # and fills this key).
    _C.MODEL.LT.META.DEV_DATASETS = ()
    # Seed of the held-out split and of the dev batch order (fixed, not cfg.SEED, so a resumed run holds out
    # the same images).
    _C.MODEL.LT.META.DEV_SEED = 0
    # Meta steps averaged into one point of the per-class eps history (eps_by_group.png, meta_eps.json).
    _C.MODEL.LT.META.LOG_PERIOD = META_DEFAULTS.log_period

    # Synthetic long-tailed dataset (lt_shapes): where it is generated on first use. "" = the
    # LT_SHAPES_DIR environment variable, else ~/.cache/lt_detectron/lt_shapes.
    _C.DATASETS.LT_SHAPES_DIR = ""
    # Your own LVIS- or COCO-format json files, registered under the names given here so DATASETS.TRAIN / TEST can use
    # them: a tuple of (name, json_file, image_root) or (name, json_file, image_root, format), format "auto" (LVIS
    # when the file has LVIS's fields), "lvis" or "coco" (lt_detectron.data.register_json_datasets). From the command
    # line: DATASETS.LT_JSON_DATASETS "(('my_train', 'train.json', 'images/'), ('my_val', 'val.json', 'images/'))"
    _C.DATASETS.LT_JSON_DATASETS = ()

    # LVIS evaluation (lt_detectron.evaluation; docs/evaluation.md). Backend of LTTrainer's evaluator for LVIS-format
    # test sets: "fast" (faster-coco-eval's C++ matching sharded by class over processes, lvis-api's numbers, plus
    # per-class CSV / plot) or "lvis-api" (Detectron2's LVISEvaluator, the reference).
    _C.TEST.LT_EVALUATOR = "fast"
    # Also compute Fixed AP (Dave et al. 2021, arXiv 2102.01066): the top LT_FIXED_AP_K detections per class over
    # the whole test set, no per-image cap ("fast" only). Needs enough detections per class at inference: raise
    # TEST.DETECTIONS_PER_IMAGE and lower MODEL.ROI_HEADS.SCORE_THRESH_TEST (docs/evaluation.md).
    _C.TEST.LT_FIXED_AP = False
    _C.TEST.LT_FIXED_AP_K = 10000
    # Evaluation processes of the "fast" backend; 0 = the CPUs this process may use.
    _C.TEST.LT_EVAL_WORKERS = 0
    # Multi-process inference ("fast" only): each rank streams its predictions to a shard file under the inference
    # output folder and rank 0 evaluates the joined shards, so no process holds every rank's predictions (True);
    # False gathers them to rank 0 in memory as Detectron2 does (docs/evaluation.md, "Several processes").
    _C.TEST.LT_EVAL_SHARDS = True
    # Post-hoc calibration of the box scores at inference (lt_detectron/modeling/calibration.py), for any checkpoint
    # and every box classifier whose C+1 scores sum to 1: "none" or "norcal" (Pan et al., NeurIPS 2021,
    # arXiv:2107.02170): foreground scores divided by n_c^GAMMA, renormalised with the background score kept.
    # GAMMA is a per-model choice: sweep it on held-out data with tools/calibration_sweep.py (0.5 is a starting
    # point, not a paper value). COUNTS: "instance_count" or "image_count" of the training sets.
    _C.TEST.LT_CALIBRATION = "none"
    _C.TEST.LT_CALIBRATION_GAMMA = 0.5
    _C.TEST.LT_CALIBRATION_COUNTS = "instance_count"

    if was_frozen:
        _C.freeze()
    return _C


# ---------------------------------------------------------------------------------------------------------------
# Config files. Detectron2 resolves `_BASE_` relative to the file; we also accept
# `_BASE_: "model_zoo://<path inside detectron2/configs>"` so our configs can inherit the stock model-zoo recipes.
MODEL_ZOO_PREFIX = "model_zoo://"


def _merge_dict_into(src: Dict[str, Any], dst: Dict[str, Any]) -> None:
    # Same rule as Detectron2's `_BASE_` inheritance: nested dicts merge, everything else overwrites.
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_dict_into(value, dst[key])
        else:
            dst[key] = value


def _resolve_base(base: str, child_path: str) -> str:
    if base.startswith(MODEL_ZOO_PREFIX):
        from detectron2 import model_zoo

        name = base[len(MODEL_ZOO_PREFIX) :]
        try:
            return model_zoo.get_config_file(name)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"{child_path}: _BASE_ {base!r} is not a Detectron2 model-zoo config ({err}); "
                f"fix the path after {MODEL_ZOO_PREFIX!r}, e.g. "
                f"'{MODEL_ZOO_PREFIX}LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml'."
            ) from None
    base = os.path.expanduser(base)
    return base if os.path.isabs(base) else os.path.join(os.path.dirname(child_path), base)


def load_config_dict(path: str) -> Dict[str, Any]:
    """Load a yaml config with its `_BASE_` chain (relative paths or `model_zoo://...`) into one dict."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Config file {path!r} does not exist; pass an existing yaml to --config-file "
            f"(the demo configs are under configs/demo/)."
        )
    with open(path, "r") as f:
        try:
            loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"Config file {path!r} is not valid YAML: {err}; fix the syntax.") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"Config file {path!r} must hold a mapping of KEY: value, got {type(loaded).__name__}.")
    base = loaded.pop("_BASE_", None)
    if base is None:
        return loaded
    base_path = _resolve_base(str(base), path)
    if str(base).startswith(MODEL_ZOO_PREFIX):
        # Model-zoo files use relative `_BASE_`s of their own; Detectron2's loader handles those.
        merged = CN.load_yaml_with_base(base_path, allow_unsafe=True)
    else:
        merged = load_config_dict(base_path)
    _merge_dict_into(loaded, merged)
    return merged


def merge_config_file(cfg: CN, path: str) -> CN:
    """Merge a config file (with `_BASE_` chain, `model_zoo://` allowed) into `cfg`, like `cfg.merge_from_file`.

    Call `add_lt_config(cfg)` first so `MODEL.LT.*` keys exist. Unknown keys raise a KeyError naming the file.
    """
    loaded = type(cfg)(load_config_dict(path))
    version = loaded.get("VERSION", cfg.VERSION)
    if version != cfg.VERSION:
        raise ValueError(
            f"Config file {path!r} has VERSION {version} but this Detectron2 expects {cfg.VERSION}; "
            f"update the file to the current config format."
        )
    try:
        cfg.merge_from_other_cfg(loaded)
    except KeyError as err:
        bad = unknown_key(err)
        hint = f" {unknown_key_hint(bad, cfg)}" if bad is not None else ""
        raise KeyError(
            f"Config file {path!r}: {err.args[0] if err.args else err}.{hint} Fix the key's spelling, or call "
            f"add_lt_config(cfg) before merging if it is an lt-detectron key (MODEL.LT.*)."
        ) from None
    return cfg
