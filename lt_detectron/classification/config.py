"""Configuration of the classification trainer: defaults, YAML files (with `_BASE_`) and KEY=VALUE overrides.

Every key the classification trainer reads is defined, with its default and meaning, in `get_cfg()` below; a YAML
file or override that names any other key fails with an error naming the file, the key and the keys that exist.
Defaults follow the papers; docs/methods.md gives each method's formula, defaults and citation.
"""

from __future__ import annotations

import difflib
import os
import warnings
from typing import Iterable, Sequence

from fvcore.common.config import CfgNode as _FvcoreCfgNode

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config", "RENAMED_KEYS"]

# Old key -> new key. A config file or override with the old name still works, with a deprecation warning.
RENAMED_KEYS = {
    "METHOD.TEST_PRIOR": "METHOD.TEST_TARGET_PRIOR",  # one name with detection's MODEL.LT.TEST_TARGET_PRIOR
}


def _translated(key: str, value, source: str) -> list:
    """[(key, value), ...] that an old key and its value stand for today (a deprecation warning names the change)."""
    new = RENAMED_KEYS.get(key)
    if new is None:
        return [(key, value)]
    warnings.warn(f"{source}: {key} is deprecated; use {new}.", DeprecationWarning, stacklevel=4)
    return [(new, value)]


def _translate_nested(loaded: dict, source: str) -> dict:
    """The nested dict of a YAML file with deprecated keys translated (see RENAMED_KEYS)."""
    flat: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            full = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                walk(value, full + ".")
            else:
                flat[full] = value

    walk(loaded, "")
    out: dict = {}
    for full, value in flat.items():
        for key, new_value in _translated(full, value, source):
            *parents, leaf = key.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = new_value
    return out


class ConfigError(ValueError):
    """A config file or override names a key that does not exist or gives a value of the wrong type."""


class CfgNode(_FvcoreCfgNode):
    """fvcore's CfgNode (YAML + `_BASE_` inheritance) with errors that name the source, the key and the fix."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:  # noqa: D102
        if not os.path.isfile(cfg_filename):
            raise ConfigError(f"config file {cfg_filename!r} does not exist; pass an existing YAML file to --config")
        source = f"config file {cfg_filename}"
        try:
            loaded = _translate_nested(self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe), source)
            self.merge_from_other_cfg(type(self)(loaded))
        except (KeyError, ValueError) as err:
            raise ConfigError(_explain(self, err, source=source)) from None

    def merge_from_list(self, cfg_list: list) -> None:  # noqa: D102
        """Merge [KEY, VALUE, ...]; keys under a `new_allowed` node (e.g. MODEL.ARGS.WIDTH) may be new."""
        if len(cfg_list) % 2:
            raise ConfigError(f"overrides must come as KEY VALUE pairs, got an odd list: {cfg_list}")
        nested: dict = {}
        for old_key, old_value in zip(cfg_list[0::2], cfg_list[1::2]):
            for key, value in _translated(old_key, old_value, "command-line override"):
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


def _all_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, CfgNode):
            keys.extend(_all_keys(value, full + "."))
    return keys


def _explain(cfg: CfgNode, err: Exception, source: str) -> str:
    message = err.args[0] if err.args else str(err)
    if "Non-existent config key" in str(message):
        bad = str(message).split(":", 1)[1].strip()
        known = _all_keys(get_cfg())
        close = difflib.get_close_matches(bad, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        parent = bad.rsplit(".", 1)[0] if "." in bad else ""
        siblings = (
            [k for k in known if k.rsplit(".", 1)[0] == parent and k != parent]
            if parent
            else [k for k in known if "." not in k]
        )
        return (
            f"{source}: unknown key {bad!r}.{hint} Keys at that level: {', '.join(sorted(siblings))}. "
            "Fix: rename or remove the key (all keys are defined in lt_detectron/classification/config.py)."
        )
    return f"{source}: {message}. Fix: give the key a value of the type its default has (see get_cfg())."


def get_cfg() -> CfgNode:
    """A fresh copy of the default classification config."""
    _C = CfgNode()
    _C.SEED = 0
    # Run directory: config.yaml, metrics.csv, TensorBoard events, checkpoints, evaluations.
    _C.OUTPUT_DIR = "output/classification/run"
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
    # One of lt_detectron.classification.methods.METHODS (ce, cb_ce, focal, ..., m2m).
    _C.METHOD.NAME = "ce"
    # Target prior p_t at inference for the prior-aware methods (pc_softmax, balanced_softmax, lade;
    # docs/methods.md#pc-softmax):
    # "uniform", "source" (training prior), a path to a json list of C numbers, or "n1 n2 ... nC" (normalised).
    # Old name: METHOD.TEST_PRIOR (accepted with a deprecation warning).
    _C.METHOD.TEST_TARGET_PRIOR = "uniform"
    # Class-balanced weights (docs/methods.md#class-weights): effective number with this beta; None = (N-1)/N.
    _C.METHOD.CB = CfgNode()
    _C.METHOD.CB.BETA = 0.9999
    _C.METHOD.FOCAL = CfgNode()
    _C.METHOD.FOCAL.GAMMA = 2.0
    _C.METHOD.FOCAL.FORM = "softmax"  # "softmax" | "sigmoid"
    _C.METHOD.LDAM = CfgNode()
    _C.METHOD.LDAM.MAX_MARGIN = 0.5
    _C.METHOD.LDAM.SCALE = 30.0
    # Deferred re-weighting (docs/methods.md#ldam-and-deferred-re-weighting): epoch at which CB weights switch on
    # for any per-example loss.
    # -1 = off, except for ldam_drw where -1 means 80% of the epochs (160 of 200 on CIFAR).
    _C.METHOD.DRW_START_EPOCH = -1
    _C.METHOD.DRW_BETA = 0.9999
    _C.METHOD.LADE = CfgNode()  # docs/methods.md#lade
    _C.METHOD.LADE.ALPHA = 0.1
    _C.METHOD.LADE.LAMBDA = 0.1
    _C.METHOD.LADE.IMPORTANCE = "label"  # "label" (paper eq. 13) | "column" (authors' public code)
    _C.METHOD.LDA = CfgNode()  # docs/methods.md#lda
    _C.METHOD.LDA.GAMMA = 2.0
    _C.METHOD.LDA.WINDOW = 100  # 0 = max(1, N / (n_min * B))
    _C.METHOD.LDA.LAMBDA_U = 1.0
    _C.METHOD.LDA.LAMBDA_B = 2.0
    _C.METHOD.LDA.LAMBDA_D = 1.0
    _C.METHOD.LDA.MARGIN = 1.0
    _C.METHOD.LDA.PROJ_HEAD = "linear"  # "linear" (d->PROJ_DIM) | "mlp" (d->512->PROJ_DIM)
    _C.METHOD.LDA.PROJ_DIM = 128
    _C.METHOD.LDA.PAIR_WEIGHTS = False  # paper eq. 8 pair weights (w_c + w_c')
    _C.METHOD.META = CfgNode()  # docs/methods.md#meta-learned-conditional-weights; meta_ce / meta_focal /
    # meta_ldam use it
    # Stage 2 starts at this epoch (-1 = at the first lr decay, SOLVER.STEPS[0]).
    _C.METHOD.META.START_EPOCH = -1
    _C.METHOD.META.INNER_LR = -1.0  # virtual-step lr eta; -1 = the current optimizer lr
    # tau. Losses are batch means (docs/methods.md#conventions), so eps scales as tau / (B * B_d) relative to the
    # sums of Jamal et al. 2020:
    # tau = B * B_d here reproduces the paper's tau = 1 (the digits and CIFAR configs set it so).
    _C.METHOD.META.EPS_LR = 1.0
    _C.METHOD.META.BETA = None  # class weights w_y: effective number with this beta; None = (N-1)/N
    # Development set D: k images per class, held out of "train" (CIFAR-LT, iNat) or taken from "val"
    # (ImageNet-LT, Places-LT; digits_lt with DATASET.ARGS.VAL_PER_CLASS).
    _C.METHOD.META.DEV_SOURCE = "train"
    _C.METHOD.META.DEV_PER_CLASS = 10
    _C.METHOD.META.DEV_BATCH_SIZE = 100
    _C.METHOD.META.MODE = "full"  # "full" | "classifier" (update only the classifier in stage 2,
    # Jamal et al. 2020 §5.3)
    _C.METHOD.META.L2RW = False  # ablation: clip eps at 0 and normalise per batch
    _C.METHOD.M2M = CfgNode()  # docs/methods.md#m2m
    # Frozen ERM classifier g: a checkpoint path; "" = train it first with this config and METHOD.NAME ce.
    _C.METHOD.M2M.G_CHECKPOINT = ""
    _C.METHOD.M2M.START_EPOCH = 160  # deferred start: plain ERM before it
    _C.METHOD.M2M.STEPS = 10  # T
    _C.METHOD.M2M.STEP_SIZE = 0.1  # eta
    _C.METHOD.M2M.BETA = 0.999  # searched in {0.9, 0.99, 0.999}
    _C.METHOD.M2M.LAMBDA = 0.1  # searched in {0.01, 0.1, 0.5}
    _C.METHOD.M2M.GAMMA = 0.99  # searched in {0.9, 0.99}
    _C.METHOD.M2M.NOISE_STD = 0.01  # x = x0 + N(0, std^2) noise before the T steps

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


def load_config(config_file: str | None = None, overrides: Sequence[str] | Iterable[str] = ()) -> CfgNode:
    """Defaults <- YAML file (with `_BASE_`) <- `KEY=VALUE` overrides; returns a frozen config."""
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    pairs: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. SOLVER.EPOCHS=10)")
        key, value = item.split("=", 1)
        pairs += [key.strip(), value]
    if pairs:
        cfg.merge_from_list(pairs)
    cfg.freeze()
    return cfg
