"""Train or evaluate a long-tailed classifier from a YAML config.

    python -m lt_detectron.classification.train --config configs/classification/digits_lt_lade.yaml [KEY VALUE ...]
    python -m lt_detectron.classification.train --config FILE --eval-only [--checkpoint PATH] [KEY VALUE ...]

OUTPUT_DIR is one run. A new folder starts a new run. A folder holding a run with the same config (its config.yaml,
OUTPUT_DIR and LOG.PROGRESS_BAR aside) resumes it from last.pth, saying so in one line; a finished one trains and
writes nothing and returns its final evaluation. A folder holding another run (last.pth, model_final.pth,
config.yaml, metrics.csv or eval/ of a different config) is refused (exit status 2, the differing keys named):
``--resume`` continues that run with the new values, ``--overwrite`` deletes its outputs and starts over; nothing
else rewrites them. ``--eval-only`` loads ``--checkpoint`` (default: OUTPUT_DIR/model_final.pth, else
OUTPUT_DIR/last.pth) and writes OUTPUT_DIR/eval/<tag>/ only (not metrics.csv, never the training's eval/final).
Count and size keys are checked before anything runs (config.check_config). User errors end in `error: ...` (one
screen) and exit status 2; LT_DEBUG=1 shows the traceback.

Overrides are `KEY VALUE` pairs, as in Detectron2's tools/train_net.py. Every key and its default:
lt_detectron/classification/config.py. M2m without METHOD.M2M.G_CHECKPOINT first trains its frozen classifier g (the
same config with METHOD.NAME ce) into OUTPUT_DIR/m2m_g, or reuses the weights already there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from typing import Any, Sequence

if __name__ == "__main__":  # the CLI pins CPU kernels before torch loads; a library import leaves the process alone
    from lt_detectron.utils.numerics import pin_cpu_numerics

    pin_cpu_numerics()

from ..utils.cli import run_cli
from .config import CfgNode, ConfigError, load_config
from .methods import METHOD_REGISTRY, M2mMethod
from .trainer import CHECKPOINT, FINAL_WEIGHTS, ClassificationTrainer

logger = logging.getLogger(__name__)

SUMMARY_KEYS = ("top1", "bacc", "gm", "many", "medium", "few", "ece")
# What the trainer writes into OUTPUT_DIR: any of them marks the folder as holding a run.
RUN_FILES = (CHECKPOINT, FINAL_WEIGHTS, "config.yaml", "metrics.csv")
RUN_FOLDERS = ("eval", "tensorboard")
# Keys that say where and how a run is shown, not what it computes: a difference in them is not another run.
UNCOMPARED = ("OUTPUT_DIR", "LOG.PROGRESS_BAR")
TRAINING_TAGS = re.compile(r"final|epoch_\d+")  # eval/<tag> folders the training writes
SHOWN_DIFFERENCES = 12


class RunDirError(ValueError):
    """OUTPUT_DIR holds another run's outputs (or an evaluation the command would replace); the message names the
    folder, the differing keys and the fix."""


def _flatten(node: Any, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value else repr(value)


def config_differences(saved: dict, cfg: CfgNode, ignore: Sequence[str] = ()) -> list[str]:
    """`KEY old -> new` for every key whose value differs between a saved config (a dict, e.g. a run's
    config.yaml) and `cfg`; keys in UNCOMPARED and keys starting with an `ignore` prefix are left out."""
    import yaml

    old, new = _flatten(saved), _flatten(yaml.safe_load(cfg.dump()))
    absent = object()
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in UNCOMPARED or any(key.startswith(prefix) for prefix in ignore):
            continue
        a, b = old.get(key, absent), new.get(key, absent)
        if a != b:
            shown = ["(absent)" if v is absent else _show(v) for v in (a, b)]
            diffs.append(f"{key} {shown[0]} -> {shown[1]}")
    return diffs


def _saved_config(output_dir: str) -> dict | None:
    """The run's config.yaml as a dict; None when there is none or it is not a YAML mapping."""
    import yaml

    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def run_outputs(output_dir: str) -> list[str]:
    """The trainer's outputs present in `output_dir` (file names, folders with a trailing /)."""
    files = [name for name in RUN_FILES if os.path.exists(os.path.join(output_dir, name))]
    return files + [f"{name}/" for name in RUN_FOLDERS if os.path.isdir(os.path.join(output_dir, name))]


def _free_folder(output_dir: str) -> str:
    base = os.path.normpath(output_dir)
    n = 2
    while os.path.exists(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def prepare_output_dir(
    cfg: CfgNode,
    resume: bool = False,
    overwrite: bool = False,
    ignore: Sequence[str] = (),
    what: str = "OUTPUT_DIR",
    extra_fixes: Sequence[str] = (),
    run_dir: str | None = None,
) -> bool:
    """Decide what training `cfg` does with cfg.OUTPUT_DIR; returns whether to resume from its last.pth.

    An empty folder: a new run. The same config (`config_differences` empty): resume it (one log line). Another
    run's outputs: RunDirError naming the folder, the differing keys and the fix, having written nothing; unless
    `resume` (continue that run's last.pth with the new values, the differences logged) or `overwrite` (delete the
    trainer's outputs there, then a new run). `ignore`: key prefixes left out of the comparison; `what`, `extra_fixes`
    and `run_dir` (the OUTPUT_DIR the user sets, default cfg.OUTPUT_DIR) word the error for a sub-run such as M2m's g.
    """
    out = cfg.OUTPUT_DIR
    present = run_outputs(out)
    if not present:
        if resume:
            logger.info("--resume: %s holds no run; starting a new one", out)
        return False
    if overwrite:
        for name in present:
            path = os.path.join(out, name.rstrip("/"))
            shutil.rmtree(path) if name.endswith("/") else os.remove(path)
        logger.warning("--overwrite: deleted %s from %s; starting a new run", ", ".join(present), out)
        return False
    saved = _saved_config(out)
    diffs = None if saved is None else config_differences(saved, cfg, ignore)
    has_checkpoint = os.path.isfile(os.path.join(out, CHECKPOINT))
    if diffs == []:
        if has_checkpoint:
            logger.info("%s %s holds a run with the same config: resuming it from %s", what, out, CHECKPOINT)
        else:
            logger.info("%s %s holds a run with the same config but no %s: starting it over", what, out, CHECKPOINT)
        return True
    if resume and has_checkpoint:
        changed = "; ".join(diffs) if diffs else "unknown (no config.yaml to compare with)"
        logger.warning("--resume: continuing the run in %s with changed keys: %s", out, changed)
        return True
    if diffs is None:
        why = "It has no readable config.yaml to compare this config with."
    else:
        more = len(diffs) - SHOWN_DIFFERENCES
        shown = diffs[:SHOWN_DIFFERENCES] + ([f"... and {more} more"] if more > 0 else [])
        why = "Its config.yaml differs from this config in: " + ", ".join(shown) + "."
    if resume:
        why += f"\n  --resume: it has no {CHECKPOINT} to continue from."
    fixes = [f"set another OUTPUT_DIR for a new run (e.g. OUTPUT_DIR {_free_folder(run_dir or out)})"]
    if has_checkpoint and not resume:
        fixes.append("pass --resume to continue that run with these values")
    fixes.append("pass --overwrite to delete its outputs and start over there")
    fixes += list(extra_fixes)
    raise RunDirError(
        f"{what} {out} already holds another run ({', '.join(present)}); nothing was written.\n  {why}\n"
        f"  Fix: {'; or '.join(fixes)}."
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lt_detectron.classification.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", required=True, help="YAML config file (may name a _BASE_ file)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate a checkpoint instead of training")
    parser.add_argument("--checkpoint", default="", help="weights for --eval-only (default: from OUTPUT_DIR)")
    run = parser.add_mutually_exclusive_group()
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue OUTPUT_DIR/last.pth even if the config differs from the run's config.yaml (a run with the "
        "same config is resumed without it)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the outputs of the run in OUTPUT_DIR (last.pth, model_final.pth, config.yaml, metrics.csv, "
        "eval/, tensorboard/) and start a new run there",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="evaluation folder under OUTPUT_DIR/eval (default: final, or eval_only with --eval-only)",
    )
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides as KEY VALUE pairs, e.g. SOLVER.EPOCHS 10",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # Flags after the overrides (`... SOLVER.EPOCHS 60 --resume`) land in the REMAINDER: take them out and parse
    # again, so they act as flags instead of failing as a KEY without a VALUE.
    late, overrides, rest = [], [], list(args.overrides)
    while rest:
        token = rest.pop(0)
        action = parser._option_string_actions.get(token)
        if action is None:
            overrides.append(token)
            continue
        late.append(token)
        if action.nargs != 0 and rest:  # an option with a value (--checkpoint PATH, --tag NAME)
            late.append(rest.pop(0))
    if late:
        args = parser.parse_args(argv[: len(argv) - len(args.overrides)] + late + overrides)
    if args.eval_only and (args.resume or args.overwrite):
        parser.error("--eval-only trains nothing: leave out --resume / --overwrite")
    return args


def _eval_checkpoint(cfg, explicit: str) -> str:
    if explicit:
        return explicit
    for name in (FINAL_WEIGHTS, CHECKPOINT):
        path = os.path.join(cfg.OUTPUT_DIR, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"--eval-only: neither {FINAL_WEIGHTS} nor {CHECKPOINT} in OUTPUT_DIR={cfg.OUTPUT_DIR}; "
        "train first, set OUTPUT_DIR=... or pass --checkpoint PATH"
    )


def _frozen_classifier_configs(cfg: CfgNode) -> tuple[CfgNode | None, CfgNode]:
    """(g's config or None, `cfg` with METHOD.M2M.G_CHECKPOINT set to where g's weights go), training nothing."""
    name = cfg.METHOD.NAME
    is_m2m = name in METHOD_REGISTRY and issubclass(METHOD_REGISTRY.get(name), M2mMethod)
    if not is_m2m or cfg.METHOD.M2M.G_CHECKPOINT:
        return None, cfg
    g_cfg = cfg.clone()
    g_cfg.defrost()
    g_cfg.METHOD.NAME = "ce"
    g_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "m2m_g")
    g_cfg.TEST.EVAL_PERIOD = 0
    g_cfg.freeze()
    cfg = cfg.clone()
    cfg.defrost()
    cfg.METHOD.M2M.G_CHECKPOINT = os.path.join(g_cfg.OUTPUT_DIR, FINAL_WEIGHTS)
    cfg.freeze()
    return g_cfg, cfg


def with_frozen_classifier(cfg: CfgNode, resume: bool = False, overwrite: bool = False) -> CfgNode:
    """M2m's g for a training run: `cfg` with METHOD.M2M.G_CHECKPOINT set, after training g when it is empty.

    g is ERM of the same recipe: this config with METHOD.NAME ce, trained into OUTPUT_DIR/m2m_g unless its
    weights are already there from the same config (METHOD.M2M.* aside, which g does not read). A g of another
    config there is refused as `prepare_output_dir` refuses a run (`resume`: reuse it; `overwrite`: retrain it).
    Other methods, and a G_CHECKPOINT already given, return `cfg` unchanged.
    """
    g_cfg, cfg = _frozen_classifier_configs(cfg)
    if g_cfg is None:
        return cfg
    g_resume = prepare_output_dir(
        g_cfg,
        resume=resume,
        overwrite=overwrite,
        ignore=("METHOD.M2M.",),
        what="M2m's classifier g folder",
        extra_fixes=["set METHOD.M2M.G_CHECKPOINT to the model_final.pth of a trained g"],
        run_dir=os.path.dirname(g_cfg.OUTPUT_DIR),
    )
    path = cfg.METHOD.M2M.G_CHECKPOINT
    if not (g_resume and os.path.isfile(path)):
        logger.info("M2m: training the ERM classifier g into %s", g_cfg.OUTPUT_DIR)
        ClassificationTrainer(g_cfg).train(resume=g_resume)
    return cfg


def _check_eval_tag(cfg: CfgNode, tag: str) -> None:
    folder = os.path.join(cfg.OUTPUT_DIR, "eval", tag)
    if TRAINING_TAGS.fullmatch(tag) and os.path.exists(folder):
        raise RunDirError(
            f"--eval-only --tag {tag}: {folder} holds the training run's evaluation; nothing was written. "
            "Fix: pass another --tag (the default is eval_only)."
        )


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    if args.eval_only:
        tag = args.tag or "eval_only"
        _check_eval_tag(cfg, tag)
        checkpoint = _eval_checkpoint(cfg, args.checkpoint)
        trainer = ClassificationTrainer(cfg, training=False)
        trainer.load_checkpoint(checkpoint, weights_only=True)
        result = trainer.evaluate(tag=tag, log=False)
        trainer.close()
    else:
        # The run's folder is checked before anything is trained or written (M2m's g included).
        resume = prepare_output_dir(_frozen_classifier_configs(cfg)[1], resume=args.resume, overwrite=args.overwrite)
        cfg = with_frozen_classifier(cfg, resume=args.resume, overwrite=args.overwrite)
        result = ClassificationTrainer(cfg).train(resume=resume)
    summary = {k: result.get(k) for k in SUMMARY_KEYS}
    print(json.dumps({"method": cfg.METHOD.NAME, "output_dir": cfg.OUTPUT_DIR, **summary}))
    return result


def cli(argv: Sequence[str] | None = None) -> int:
    """`main` for the command line: a user error (bad config or key, a used OUTPUT_DIR, a missing checkpoint) ends
    in `error: ...` on stderr and exit status 2, without a traceback unless LT_DEBUG=1 (lt_detectron.utils.cli)."""
    return run_cli(lambda: main(argv), user_errors=(ConfigError, RunDirError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
