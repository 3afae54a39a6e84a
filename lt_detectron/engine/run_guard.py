"""Refuse `--resume` into a run made with another head, method or dataset.

Also the tools' other input checks before a run starts: `checked_cfg` (config errors as one-line user errors) and
`dataset_errors` (dataset checks likewise).

Detectron2's `--resume` loads OUTPUT_DIR's last checkpoint into whatever model the new config builds: after a
change of box classifier it continued silently (balanced_softmax after LADE) or failed with an optimizer group-size
error (LDAM after LADE). `check_resume` compares the run's saved OUTPUT_DIR/config.yaml with the new config on the
keys that decide the model and its data, before anything is built or written, and refuses with the differences
shown; `--resume-any-config` (tools/train_net.py) continues anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, List, Mapping, Sequence, Tuple

import yaml
from detectron2.config import CfgNode

from lt_detectron.utils.cli import UserError, UserFileNotFoundError, config_error, error_message

from .setup import build_cfg

__all__ = [
    "ResumeConfigError",
    "GUARDED_KEYS",
    "LDA_KEYS",
    "config_differences",
    "check_resume",
    "checked_cfg",
    "check_weights_exist",
    "WEIGHTS_FIX",
    "dataset_errors",
]

logger = logging.getLogger(__name__)

# What makes a checkpoint another run's: the head and its classifier, the classes and the training data, and the
# switches that add or remove parameters or change the training procedure.
GUARDED_KEYS = (
    "MODEL.LT.BOX_CLASSIFIER",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "DATASETS.TRAIN",
    "MODEL.LT.META.ENABLED",
    "MODEL.LT.META.MODE",
    "MODEL.LT.COSINE.ENABLED",
)
# LDA's switches, compared when both runs train the LDA box classifier (other heads ignore them).
LDA_KEYS = (
    "MODEL.LT.LDA.PROJ_HEAD",
    "MODEL.LT.LDA.PROJ_DIM",
    "MODEL.LT.LDA.BALANCED_FEATURE_GRAD",
    "MODEL.LT.LDA.UNBALANCED_NORM",
)
_MISSING = "<not set>"


# What building a config from a file and KEY VALUE overrides raises for a bad input (yacs asserts on some).
CONFIG_ERRORS = (ValueError, KeyError, AssertionError, FileNotFoundError, yaml.YAMLError)
# What the dataset checks before launch raise for a bad dataset (AnnotationError is a ValueError; FileExistsError:
# an lt_shapes folder holding someone else's files).
DATASET_ERRORS = (ValueError, KeyError, FileExistsError, FileNotFoundError)


def checked_cfg(config_file: str, opts: Sequence[str] | None) -> CfgNode:
    """`build_cfg(config_file, opts)`; a bad key, value or file becomes a UserError saying where (the file or the
    command-line override) and the fix."""
    try:
        return build_cfg(config_file, list(opts or []))
    except CONFIG_ERRORS as err:
        raise config_error(err, config_file, list(opts or [])) from err


@contextlib.contextmanager
def dataset_errors() -> Iterator[None]:
    """Within this block, a dataset check's error (its message names the file and the fix) is a UserError."""
    try:
        yield
    except DATASET_ERRORS as err:
        raise UserError(error_message(err)) from err


WEIGHTS_FIX = (
    "point MODEL.WEIGHTS at an intact checkpoint (a .pth or .pkl file; copy or download it again if it was cut "
    'short), or pass MODEL.WEIGHTS "" to start from random weights'
)


def check_weights_exist(cfg: CfgNode, resume: bool = False) -> None:
    """A local MODEL.WEIGHTS that does not exist fails here, before datasets are prepared and a model is built (with
    `resume` and a checkpoint in OUTPUT_DIR, MODEL.WEIGHTS is not read and not checked). URLs are left to the
    checkpointer; a file that exists but cannot be read is named when it is loaded."""
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights or os.path.isfile(weights):
        return
    if resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    raise UserFileNotFoundError(
        f"MODEL.WEIGHTS {weights} does not exist (relative paths are read from {os.getcwd()}); nothing was run. "
        f"Fix: {WEIGHTS_FIX}."
    )


class ResumeConfigError(UserError):
    """--resume into a run of another config; the message names the folder, the differing keys and the fixes."""


def _value(config: Any, key: str) -> Any:
    node = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return tuple(node) if isinstance(node, list) else node


def config_differences(saved: Mapping, new: Mapping) -> List[Tuple[str, Any, Any]]:
    """(key, saved value, new value) for each guarded key that differs (lists and tuples compare alike)."""
    keys = list(GUARDED_KEYS)
    if _value(saved, "MODEL.LT.BOX_CLASSIFIER") == _value(new, "MODEL.LT.BOX_CLASSIFIER") == "lda":
        keys += LDA_KEYS
    return [(k, _value(saved, k), _value(new, k)) for k in keys if _value(saved, k) != _value(new, k)]


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def check_resume(cfg: CfgNode, resume: bool, allow_any_config: bool = False) -> None:
    """With `resume` and a checkpoint in cfg.OUTPUT_DIR, raise ResumeConfigError when the run's saved config.yaml
    differs from `cfg` on `GUARDED_KEYS` (`LDA_KEYS` for two LDA runs). `allow_any_config` logs the differences
    instead. Reads only; call it before the trainer (or anything else) writes into OUTPUT_DIR."""
    out = cfg.OUTPUT_DIR
    saved_file = os.path.join(out, "config.yaml")
    if not resume or not os.path.isfile(os.path.join(out, "last_checkpoint")):
        return  # nothing to continue: a new run
    if not os.path.isfile(saved_file):
        logger.warning("--resume: %s has no config.yaml; the checkpoint's config cannot be compared", out)
        return
    try:
        with open(saved_file) as f:
            saved = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ResumeConfigError(
            f"--resume: {saved_file}, the config of the run being resumed, cannot be read ({err}); nothing was "
            "written. Fix: pass --resume-any-config to continue without the check, or another OUTPUT_DIR."
        ) from None
    differences = config_differences(saved if isinstance(saved, Mapping) else {}, cfg)
    if not differences:
        return
    listed = ", ".join(f"{k} {_shown(a)} -> {_shown(b)}" for k, a, b in differences)
    if allow_any_config:
        logger.warning("--resume-any-config: continuing the run in %s with another config: %s", out, listed)
        return
    raise ResumeConfigError(
        f"--resume: OUTPUT_DIR {out} holds a run made with another config ({listed}); its checkpoint would be "
        "continued as another model. Nothing was written.\n"
        "Fix: pass another OUTPUT_DIR to start a new run, or --resume-any-config to continue this one with the new "
        "values (without --resume, training starts over in this folder and replaces its checkpoints)."
    )
