"""Configuration of the classification trainer: defaults, YAML files (with `_BASE_`) and `KEY VALUE` overrides.

Every key the classification trainer reads is defined, with its default and meaning, in `get_cfg()` below; a YAML
file or override that names any other key fails with an error naming the file, the key and the keys that exist.
Method defaults come from the records next to each implementation (`lt_detectron.losses.*_DEFAULTS`,
`lt_detectron.meta.engine.META_DEFAULTS`, `lt_detectron.classification.m2m.M2M_DEFAULTS`), shared with the detection
config (`lt_detectron/config.py`) where detection has the method.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

from fvcore.common.config import CfgNode as _FvcoreCfgNode

from lt_detectron.losses import CB_DEFAULTS, FOCAL_DEFAULTS, LADE_DEFAULTS, LDA_DEFAULTS, LDAM_DEFAULTS
from lt_detectron.meta.engine import META_DEFAULTS
from lt_detectron.utils.config_keys import unknown_key, unknown_key_hint

from .m2m import M2M_DEFAULTS

__all__ = ["CfgNode", "ConfigError", "check_config", "get_cfg", "load_config", "resolve_device"]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config file or override names a key that does not exist or gives a value of the wrong type."""


class CfgNode(_FvcoreCfgNode):
    """fvcore's CfgNode (YAML + `_BASE_` inheritance) with errors that name the source, the key and the fix."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:  # noqa: D102
        if not os.path.isfile(cfg_filename):
            raise ConfigError(f"config file {cfg_filename!r} does not exist; pass an existing YAML file to --config")
        source = f"config file {cfg_filename}"
        try:
            self.merge_from_other_cfg(type(self)(self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)))
        except (KeyError, ValueError) as err:
            raise ConfigError(_explain(self, err, source=source)) from None

    def merge_from_list(self, cfg_list: list) -> None:  # noqa: D102
        """Merge [KEY, VALUE, ...]; keys under a `new_allowed` node (e.g. MODEL.ARGS.WIDTH) may be new."""
        if len(cfg_list) % 2:
            raise ConfigError(
                f"command-line override: {cfg_list[-1]!r} has no value; give KEY VALUE pairs, e.g. SOLVER.EPOCHS 10 "
                "(Detectron2's syntax)"
            )
        nested: dict = {}
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            *parents, leaf = key.split(".")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            # A string key keeps the text as given (a prior "0.1,0.9" must not become a tuple).
            node[leaf] = repr(value) if isinstance(self._lookup(key), str) else value
        try:
            self.merge_from_other_cfg(CfgNode(nested))
        except (KeyError, ValueError, AssertionError) as err:
            raise ConfigError(_explain(self, err, source="command-line override")) from None

    def _lookup(self, key: str):
        node = self
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def _explain(cfg: CfgNode, err: Exception, source: str) -> str:
    message = err.args[0] if err.args else str(err)
    bad = unknown_key(err)
    if bad is not None:
        return (
            f"{source}: unknown key {bad!r}. {unknown_key_hint(bad, get_cfg())} "
            "Fix: rename or remove the key (all keys are defined in lt_detectron/classification/config.py)."
        )
    return f"{source}: {message}. Fix: give the key a value of the type its default has (see get_cfg())."


def get_cfg() -> CfgNode:
    """A fresh copy of the default classification config."""
    _C = CfgNode()
    _C.SEED = 0
    # Run directory: config.yaml, metrics.csv, TensorBoard events, checkpoints, evaluations.
    _C.OUTPUT_DIR = "output/classification/run"
    # "cpu", "cuda", "cuda:N", or "auto": cuda when a CUDA device is available, else cpu (said in one log line; the
    # CIFAR and ImageNet configs use it). "cuda" on a machine without one is refused before anything loads.
    _C.DEVICE = "cpu"

    _C.DATASET = CfgNode()
    # lt_detectron.classification.datasets.build_dataset(NAME, root=ROOT or None, **ARGS).
    _C.DATASET.NAME = "digits_lt"
    _C.DATASET.ROOT = ""
    # Extra keyword arguments of build_dataset, e.g. {IMBALANCE_FACTOR: 100} (keys are lower-cased).
    _C.DATASET.ARGS = CfgNode(new_allowed=True)

    _C.MODEL = CfgNode()
    # lt_detectron.classification.models.build_model(NAME, num_classes, **ARGS).
    _C.MODEL.NAME = "digits_mlp"
    _C.MODEL.ARGS = CfgNode(new_allowed=True)

    _C.METHOD = CfgNode()
    # A name in lt_detectron.classification.methods.METHOD_REGISTRY (ce, cb_ce, focal, ..., m2m).
    _C.METHOD.NAME = "ce"
    # Target prior p_t at inference for the prior-aware methods (pc_softmax, balanced_softmax, lade;
    # docs/methods.md#pc-softmax):
    # "uniform", "source" (training prior), a path to a json list of C numbers, or "n1 n2 ... nC" (normalised).
    _C.METHOD.TEST_TARGET_PRIOR = "uniform"
    # Class-balanced weights (docs/methods.md#class-weights): effective number with this beta; None = (N-1)/N.
    _C.METHOD.CB = CfgNode()
    _C.METHOD.CB.BETA = CB_DEFAULTS.beta
    _C.METHOD.FOCAL = CfgNode()
    _C.METHOD.FOCAL.GAMMA = FOCAL_DEFAULTS.gamma
    _C.METHOD.FOCAL.FORM = FOCAL_DEFAULTS.form  # "softmax" | "sigmoid"
    _C.METHOD.LDAM = CfgNode()
    _C.METHOD.LDAM.MAX_MARGIN = LDAM_DEFAULTS.max_margin
    _C.METHOD.LDAM.SCALE = LDAM_DEFAULTS.scale
    # Deferred re-weighting (docs/methods.md#ldam-and-deferred-re-weighting): effective-number class weights on a
    # per-example loss from START_EPOCH on.
    # On for ldam_drw always, for ce / focal / ldam / the meta methods' base loss when ENABLED.
    _C.METHOD.DRW = CfgNode()
    _C.METHOD.DRW.ENABLED = False
    # -1 = round(0.8 * SOLVER.EPOCHS), Cao et al.'s 160 of 200 (LDAM_DEFAULTS.drw_start_fraction).
    _C.METHOD.DRW.START_EPOCH = -1
    _C.METHOD.DRW.BETA = LDAM_DEFAULTS.drw_beta
    _C.METHOD.LADE = CfgNode()  # docs/methods.md#lade
    _C.METHOD.LADE.ALPHA = LADE_DEFAULTS.alpha
    _C.METHOD.LADE.LAMBDA = LADE_DEFAULTS.lam
    _C.METHOD.LADE.IMPORTANCE = LADE_DEFAULTS.importance  # "label" (paper eq. 13) | "column" (authors' code)
    _C.METHOD.LDA = CfgNode()  # docs/methods.md#lda
    _C.METHOD.LDA.GAMMA = LDA_DEFAULTS.gamma
    _C.METHOD.LDA.WINDOW = LDA_DEFAULTS.window  # 0 = max(1, N / (n_min * B))
    _C.METHOD.LDA.LAMBDA_U = LDA_DEFAULTS.lambda_u
    _C.METHOD.LDA.LAMBDA_B = LDA_DEFAULTS.lambda_b
    _C.METHOD.LDA.LAMBDA_D = LDA_DEFAULTS.lambda_d
    _C.METHOD.LDA.MARGIN = LDA_DEFAULTS.margin
    _C.METHOD.LDA.PROJ_HEAD = LDA_DEFAULTS.proj_head  # "linear" (d->PROJ_DIM) | "mlp" (d->512->PROJ_DIM)
    _C.METHOD.LDA.PROJ_DIM = LDA_DEFAULTS.proj_dim
    _C.METHOD.LDA.PAIR_WEIGHTS = LDA_DEFAULTS.pair_weights  # paper eq. 8 pair weights (w_c + w_c')
    # a_t's accuracy window: "zero_filled" (public code: a_t ramps up over WINDOW batches) | "recorded".
    _C.METHOD.LDA.ALPHA_RAMP = LDA_DEFAULTS.alpha_ramp
    _C.METHOD.LDA.FIXED_ALPHA = LDA_DEFAULTS.fixed_alpha  # >= 0: constant a_t (the paper's grid-search control)
    _C.METHOD.META = CfgNode()  # docs/methods.md#meta-learned-conditional-weights; meta_ce / meta_focal /
    # meta_ldam use it
    # Stage 2 starts at this epoch (-1 = at the first lr decay, min(SOLVER.STEPS)).
    _C.METHOD.META.START_EPOCH = META_DEFAULTS.start
    _C.METHOD.META.INNER_LR = META_DEFAULTS.inner_lr  # virtual-step lr eta; -1 = the current optimizer lr
    # tau. Losses are batch means (docs/methods.md#conventions), so eps scales as tau / (B * B_d) relative to the
    # sums of Jamal et al. 2020:
    # tau = B * B_d here reproduces the paper's tau = 1 (the digits and CIFAR configs set it so).
    _C.METHOD.META.EPS_LR = META_DEFAULTS.eps_lr
    _C.METHOD.META.BETA = META_DEFAULTS.beta  # class weights w_y: effective number with this beta; None = (N-1)/N
    # Development set D: k images per class, held out of "train" (CIFAR-LT, iNat) or taken from "val"
    # (ImageNet-LT, Places-LT; digits_lt with DATASET.ARGS.VAL_PER_CLASS).
    _C.METHOD.META.DEV_SOURCE = "train"
    _C.METHOD.META.DEV_PER_CLASS = META_DEFAULTS.dev_per_class
    _C.METHOD.META.DEV_BATCH_SIZE = META_DEFAULTS.dev_batch_size
    # "full" | "classifier" (update only the classifier in stage 2, Jamal et al. 2020 §5.3)
    _C.METHOD.META.MODE = META_DEFAULTS.mode
    _C.METHOD.META.L2RW = META_DEFAULTS.l2rw  # ablation: clip eps at 0 and normalise per batch
    _C.METHOD.M2M = CfgNode()  # docs/methods.md#m2m
    # Frozen ERM classifier g: a checkpoint path; "" = train it first with this config and METHOD.NAME ce.
    _C.METHOD.M2M.G_CHECKPOINT = ""
    _C.METHOD.M2M.START_EPOCH = M2M_DEFAULTS.start_epoch  # deferred start: plain ERM before it
    _C.METHOD.M2M.STEPS = M2M_DEFAULTS.steps  # T
    _C.METHOD.M2M.STEP_SIZE = M2M_DEFAULTS.step_size  # eta
    _C.METHOD.M2M.BETA = M2M_DEFAULTS.beta
    _C.METHOD.M2M.LAMBDA = M2M_DEFAULTS.lam
    _C.METHOD.M2M.GAMMA = M2M_DEFAULTS.gamma
    _C.METHOD.M2M.NOISE_STD = M2M_DEFAULTS.noise_std  # x = x0 + N(0, std^2) noise before the T steps

    _C.SOLVER = CfgNode()
    _C.SOLVER.EPOCHS = 200
    _C.SOLVER.BATCH_SIZE = 128
    _C.SOLVER.OPTIMIZER = "sgd"  # "sgd" | "adam"
    _C.SOLVER.BASE_LR = 0.1
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.NESTEROV = False
    _C.SOLVER.WEIGHT_DECAY = 2e-4
    _C.SOLVER.SCHEDULE = "step"  # "step" (x GAMMA at each epoch of STEPS) | "cosine" (to 0 at the last epoch)
    _C.SOLVER.STEPS = (160, 180)
    _C.SOLVER.GAMMA = 0.01
    _C.SOLVER.WARMUP_EPOCHS = 5  # linear warm-up from WARMUP_FACTOR * BASE_LR, per iteration
    _C.SOLVER.WARMUP_FACTOR = 0.1

    _C.DATALOADER = CfgNode()
    # "instance" (uniform over images) | "class_balanced" (class uniformly, then an image of that class).
    _C.DATALOADER.SAMPLER = "instance"
    # Deferred re-sampling (DRS): class-balanced sampler from this epoch on; -1 = off.
    _C.DATALOADER.DRS_START_EPOCH = -1
    _C.DATALOADER.NUM_WORKERS = 0
    _C.DATALOADER.DROP_LAST = False

    _C.TEST = CfgNode()
    _C.TEST.BATCH_SIZE = 256
    _C.TEST.EVAL_PERIOD = 0  # epochs between evaluations during training; 0 = only at the end
    _C.TEST.ECE_BINS = 15
    _C.TEST.PLOTS = True  # PNGs with each evaluation (plots.save_evaluation); off in benchmarks

    _C.CHECKPOINT_PERIOD = 1  # epochs between checkpoints (last.pth); 0 = only at the end
    _C.LOG = CfgNode()
    _C.LOG.TENSORBOARD = True
    _C.LOG.PROGRESS_BAR = True  # tqdm
    return _C


# Every count and size key: (key, smallest valid value, what it is / what its special values mean).
COUNT_KEYS = (
    ("SEED", 0, "the random seed"),
    ("SOLVER.EPOCHS", 1, "training epochs"),
    ("SOLVER.BATCH_SIZE", 1, "training images per batch"),
    ("SOLVER.WARMUP_EPOCHS", 0, "epochs of linear lr warm-up; 0 = none"),
    ("DATALOADER.NUM_WORKERS", 0, "data-loader processes; 0 = load in the main process"),
    ("DATALOADER.DRS_START_EPOCH", -1, "epoch deferred re-sampling starts; -1 = off"),
    ("TEST.BATCH_SIZE", 1, "test images per batch"),
    ("TEST.EVAL_PERIOD", 0, "epochs between evaluations; 0 = only at the end"),
    ("TEST.ECE_BINS", 1, "confidence bins of the ECE"),
    ("CHECKPOINT_PERIOD", 0, "epochs between checkpoints; 0 = only at the end"),
    ("METHOD.DRW.START_EPOCH", -1, "epoch deferred re-weighting starts; -1 = 0.8 x SOLVER.EPOCHS"),
    ("METHOD.LDA.WINDOW", 0, "risk-balancer window in batches; 0 = derived from the class counts"),
    ("METHOD.LDA.PROJ_DIM", 1, "output size of the LDA projection head"),
    ("METHOD.META.START_EPOCH", -1, "epoch the meta stage starts; -1 = at the first lr decay"),
    ("METHOD.META.DEV_PER_CLASS", 1, "development images per class"),
    ("METHOD.META.DEV_BATCH_SIZE", 1, "development images per meta step"),
    ("METHOD.M2M.START_EPOCH", 0, "epoch M2m's translation starts"),
    ("METHOD.M2M.STEPS", 1, "M2m's translation steps T"),
)


def check_config(cfg: CfgNode) -> CfgNode:
    """Raise ConfigError for a count or size key out of range (SOLVER.EPOCHS >= 1, batch sizes >= 1, workers >= 0,
    ...; `COUNT_KEYS`) or a SOLVER.STEPS entry that is not a positive number; return `cfg`."""
    defaults = get_cfg()
    for key, least, meaning in COUNT_KEYS:
        value = cfg._lookup(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or value < least:
            raise ConfigError(
                f"{key}={value!r}: must be a number >= {least} ({meaning}). Fix: set it in the config file or "
                f"override it, e.g. {key} {defaults._lookup(key)} (the default)"
            )
    steps = cfg.SOLVER.STEPS
    if not isinstance(steps, (list, tuple)) or not all(
        isinstance(e, (int, float)) and not isinstance(e, bool) and e > 0 for e in steps
    ):
        raise ConfigError(
            f"SOLVER.STEPS={steps!r}: must be a list of epochs > 0 (lr decays). Fix: e.g. SOLVER.STEPS \"(160, 180)\""
        )
    return cfg


def load_config(config_file: str | None = None, overrides: Sequence[str] | Iterable[str] = ()) -> CfgNode:
    """Defaults <- YAML file (with `_BASE_`) <- overrides `KEY VALUE ...` (Detectron2's syntax), checked by
    `check_config`.

    Returns:
        the frozen config.
    """
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    pairs = [str(token) for token in overrides]
    if pairs:
        cfg.merge_from_list(pairs)
    cfg.freeze()
    return check_config(cfg)


def resolve_device(name: str, log: bool = False):
    """The torch.device for the DEVICE key: "auto" is cuda when a CUDA device is available, else cpu (`log`: say
    which in one line). A device this machine lacks, or a name torch does not know, is a ConfigError with the fix."""
    import torch

    fix = "Fix: set DEVICE cpu, or DEVICE auto (cuda when available, else cpu), in the config file or as an override"
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if log:
            found = (
                f"a CUDA device ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "no CUDA device"
            )
            logger.info("DEVICE auto: %s found, using %s", found, device)
        return device
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"DEVICE={name!r} is not a device torch knows ({str(err).splitlines()[0]}). {fix}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"DEVICE={name!r}: this machine has no CUDA device (torch.cuda.is_available() is False). {fix}"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"DEVICE={name!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}. {fix}"
            )
    return device
