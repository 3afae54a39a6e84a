"""Config set-up shared by tools/train_net.py, tools/demo.py and other entry points."""

from __future__ import annotations

import argparse
import importlib

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup

from ..config import add_lt_config, merge_config_file

__all__ = ["build_cfg", "check_cfg_datasets", "setup_cfg", "register_lt_components"]


def register_lt_components() -> None:
    """Import the modules whose import registers datasets, backbones and heads with Detectron2's registries."""
    importlib.import_module("lt_detectron.data")  # lt_shapes_train / lt_shapes_val
    try:
        importlib.import_module("lt_detectron.modeling")  # LTROIHeads and the LT box predictors
        importlib.import_module("lt_detectron.modeling.backbone")  # narrow ResNet-FPN for the CPU demo
    except ImportError as err:
        raise ImportError(
            f"Could not import lt_detectron.modeling ({err}); its backbone and ROI heads cannot be registered. "
            f"Reinstall the package with `pip install -e .` from the repository root."
        ) from err


def build_cfg(config_file: str = "", opts: list | None = None) -> CfgNode:
    """get_cfg + add_lt_config + config file (`_BASE_` may be `model_zoo://...`) + KEY VALUE overrides.

    Also imports lt-detectron's registered components, so the returned config's names resolve."""
    register_lt_components()
    cfg = get_cfg()
    add_lt_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    if opts:
        if len(opts) % 2:
            raise ValueError(f"Config overrides must be KEY VALUE pairs, got an odd number of items: {opts}")
        cfg.merge_from_list(list(opts))
    if cfg.DATASETS.LT_SHAPES_DIR:
        from ..data import register_lt_shapes

        register_lt_shapes(cfg.DATASETS.LT_SHAPES_DIR)
    return cfg


def check_cfg_datasets(cfg: CfgNode, train: bool = True) -> None:
    """Fail before building the model if a dataset is missing or its annotation file is malformed
    (lt_shapes is generated here on first use; real LVIS gives an error naming the missing path)."""
    from ..data import check_datasets

    names = (list(cfg.DATASETS.TRAIN) if train else []) + list(cfg.DATASETS.TEST)
    if names:
        check_datasets(names)


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Detectron2-style `setup(args)`: build the config from args, freeze it, and run `default_setup`
    (output dir, logging, config dump, seeding)."""
    cfg = build_cfg(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    check_cfg_datasets(cfg, train=not getattr(args, "eval_only", False))
    return cfg
