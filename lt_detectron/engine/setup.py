"""Config set-up shared by tools/train_net.py, tools/demo.py and other entry points."""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup

from ..config import add_lt_config, merge_config_file
from ..utils.config_keys import unknown_key, unknown_key_hint

__all__ = [
    "build_cfg",
    "check_cfg_datasets",
    "check_registered",
    "prepare_datasets",
    "prepare_launch",
    "setup_cfg",
    "register_lt_components",
    "CLASS_STATS_FILE",
]

logger = logging.getLogger(__name__)

CLASS_STATS_FILE = "class_stats.json"  # under OUTPUT_DIR: the training sets' class statistics, read by every worker


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
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, AssertionError) as err:  # yacs asserts on an unknown override key
            raise _explained(err, "command-line override") from None
    _check_box_classifier(cfg)
    if cfg.DATASETS.LT_SHAPES_DIR:
        from ..data import register_lt_shapes

        register_lt_shapes(cfg.DATASETS.LT_SHAPES_DIR)
    if cfg.DATASETS.LT_JSON_DATASETS:
        from ..data import register_json_datasets

        register_json_datasets(cfg.DATASETS.LT_JSON_DATASETS)
    return cfg


def _check_box_classifier(cfg: CfgNode) -> None:
    """A misspelt MODEL.LT.BOX_CLASSIFIER fails here, before any dataset work or run folder, not at model build."""
    if cfg.MODEL.ROI_HEADS.NAME != "LTROIHeads":
        return
    from ..modeling import BOX_PREDICTOR_REGISTRY

    name = cfg.MODEL.LT.BOX_CLASSIFIER
    if name not in BOX_PREDICTOR_REGISTRY:
        known = sorted(BOX_PREDICTOR_REGISTRY.names())
        close = difflib.get_close_matches(name, known, n=1)
        raise ValueError(
            f"MODEL.LT.BOX_CLASSIFIER = {name!r} is not a known box classifier"
            f"{f' (did you mean {close[0]!r}?)' if close else ''}; valid names: {', '.join(known)}."
        )


def _explained(err: Exception, source: str) -> Exception:
    """yacs's bare "Non-existent config key" with the nearest valid keys (the config reference: lt_detectron/config.py
    for MODEL.LT.* / TEST.LT_*, Detectron2's defaults for the rest)."""
    bad = unknown_key(err)
    if bad is None:
        return err
    reference = add_lt_config(get_cfg())
    return KeyError(f"{source}: unknown config key {bad!r}. {unknown_key_hint(bad, reference)}")


def _stats_before_launch(name: str, validate: bool | str) -> bool:
    """The class statistics of a training set where they cost no extra parse of its annotations; returns whether
    they are known now.

    Known already or in a category-info file: attached. An LVIS-format json that is to be validated: its one load
    serves the check and the counts. Otherwise (Detectron2's builtin LVIS, COCO-format sets) nothing is read here:
    each training process counts over the dataset dicts its loader builds, the one parse stock Detectron2 makes too
    (`LTTrainer`, `dataset_dicts_loaded_once`).
    """
    from detectron2.data import MetadataCatalog

    from ..data import stats, validation

    fields = MetadataCatalog.get(name).as_dict()
    if stats.CLASS_STATS_FIELD in fields or fields.get(stats.CAT_INFO_FIELD):
        stats.dataset_class_stats(name)
        return True
    json_file = fields.get("json_file")
    if not (json_file and fields.get("evaluator_type") == "lvis"):
        return False
    if not (validate is True or (validate == "auto" and not validation.is_builtin_lvis(name))):
        return False
    validation.check_lvis_available(name)
    data = validation.load_annotation_json(json_file)
    validation.validate_lvis_json(json_file, data=data)
    # Detectron2's LVIS loader maps category id c to contiguous id c - 1 and keeps every annotation: the same counts.
    stats.attach_class_stats(name, stats.class_stats_from_lvis_dict(data, json_file))
    return True


def prepare_datasets(cfg: CfgNode, train: bool = True, validate: bool | str = "auto") -> str:
    """Once, before `launch`: generate lt_shapes where named, check every dataset of the config (`check_datasets`;
    `validate="auto"` skips walking Detectron2's builtin LVIS files), and attach the class statistics of
    DATASETS.TRAIN that need no extra parse (`_stats_before_launch`; the others are counted in each training process
    from its loader's one load).

    With `train`, the statistics known here are also written to OUTPUT_DIR/class_stats.json for worker processes
    (`setup_cfg` attaches them), and its path is returned; otherwise, or when none is known, "".
    """
    from ..data import check_datasets, ensure_datasets, write_class_stats_file

    train_names = list(cfg.DATASETS.TRAIN) if train else []
    names = train_names + [n for n in cfg.DATASETS.TEST if n not in train_names]
    check_registered(cfg, train)
    ensure_datasets(names)
    known = [name for name in train_names if _stats_before_launch(name, validate)]
    check_datasets(names, validate=validate)  # files validated above are not read again
    if not known:
        return ""
    return write_class_stats_file(os.path.join(cfg.OUTPUT_DIR, CLASS_STATS_FILE), known)


def check_registered(cfg: CfgNode, train: bool = True) -> None:
    """Every dataset name of the config is registered, else a UserError with the fix (Detectron2's own KeyError lists
    ~90 builtin names and comes from inside a launched process, after the run folder was made)."""
    from detectron2.data import DatasetCatalog

    from ..utils.cli import UserError

    registered = sorted(DatasetCatalog.list())
    for key in ("TRAIN", "TEST") if train else ("TEST",):
        for name in cfg.DATASETS[key]:
            if name in registered:
                continue
            close = difflib.get_close_matches(name, registered, n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise UserError(
                f"DATASETS.{key} names {name!r}, which is not a registered dataset{hint}. Fix: for your own LVIS- or "
                f"COCO-format json, register it on the command line: DATASETS.LT_JSON_DATASETS "
                f"\"(('{name}', 'path/to/annotations.json', 'path/to/images'),)\" (README, 'Your own data'); or use a "
                "registered name such as lt_shapes_train / lt_shapes_val or Detectron2's lvis_v1_train / lvis_v1_val."
            )


def check_cfg_datasets(cfg: CfgNode, train: bool = True) -> None:
    """Fail before building the model if a dataset is missing or its annotation file is malformed
    (lt_shapes is generated here on first use; real LVIS gives an error naming the missing path); the training
    sets' class statistics are computed on the way (`prepare_datasets`)."""
    prepare_datasets(cfg, train=train)


def prepare_launch(args: argparse.Namespace, cfg: CfgNode | None = None) -> str:
    """tools/train_net.py's step before `launch`: `prepare_datasets` for the config of `args` (or `cfg`, built from
    them), once for all processes. Returns the class-statistics file for `args.class_stats_file` ("" for
    --eval-only)."""
    cfg = cfg if cfg is not None else build_cfg(args.config_file, args.opts)
    return prepare_datasets(cfg, train=not getattr(args, "eval_only", False))


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Detectron2-style `setup(args)`: build the config from args, freeze it, and run `default_setup`
    (output dir, logging, config dump, seeding).

    Datasets: when the launcher ran `prepare_launch` (args.class_stats_file is set), only its class statistics are
    attached here, so no worker validates or counts again; otherwise `prepare_datasets` runs here.
    """
    from ..data import load_class_stats_file

    cfg = build_cfg(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    stats_file = getattr(args, "class_stats_file", None)
    if stats_file is None:
        prepare_datasets(cfg, train=not getattr(args, "eval_only", False))
    elif stats_file:
        load_class_stats_file(stats_file)
    return cfg
