"""Train or evaluate a long-tailed classifier from a YAML config.

    python -m lt_detectron.classification.train --config configs/classification/digits_lt_lade.yaml [KEY VALUE ...]
    python -m lt_detectron.classification.train --config FILE --eval-only [--checkpoint PATH] [KEY VALUE ...]

Training resumes from OUTPUT_DIR/last.pth when it exists (``--no-resume`` starts over). ``--eval-only`` loads
``--checkpoint`` (default: OUTPUT_DIR/model_final.pth, else OUTPUT_DIR/last.pth) and writes OUTPUT_DIR/eval/<tag>/.
Overrides are `KEY VALUE` pairs, as in Detectron2's tools/train_net.py. Every key and its default:
lt_detectron/classification/config.py. M2m without METHOD.M2M.G_CHECKPOINT first trains its frozen classifier g (the
same config with METHOD.NAME ce) into OUTPUT_DIR/m2m_g, or reuses the weights already there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

if __name__ == "__main__":  # the CLI pins CPU kernels before torch loads; a library import leaves the process alone
    from lt_detectron.utils.numerics import pin_cpu_numerics

    pin_cpu_numerics()

from .config import CfgNode, load_config
from .methods import METHOD_REGISTRY, M2mMethod
from .trainer import CHECKPOINT, FINAL_WEIGHTS, ClassificationTrainer

SUMMARY_KEYS = ("top1", "bacc", "gm", "many", "medium", "few", "ece")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lt_detectron.classification.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", required=True, help="YAML config file (may name a _BASE_ file)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate a checkpoint instead of training")
    parser.add_argument("--checkpoint", default="", help="weights for --eval-only (default: from OUTPUT_DIR)")
    parser.add_argument("--no-resume", action="store_true", help="ignore OUTPUT_DIR/last.pth and train from scratch")
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
    return parser.parse_args(argv)


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


def with_frozen_classifier(cfg: CfgNode) -> CfgNode:
    """M2m's g for a training run: `cfg` with METHOD.M2M.G_CHECKPOINT set, after training g when it is empty.

    g is ERM of the same recipe: this config with METHOD.NAME ce, trained into OUTPUT_DIR/m2m_g unless its
    weights are already there. Other methods, and a G_CHECKPOINT already given, return `cfg` unchanged.
    """
    name = cfg.METHOD.NAME
    is_m2m = name in METHOD_REGISTRY and issubclass(METHOD_REGISTRY.get(name), M2mMethod)
    if not is_m2m or cfg.METHOD.M2M.G_CHECKPOINT:
        return cfg
    g_cfg = cfg.clone()
    g_cfg.defrost()
    g_cfg.METHOD.NAME = "ce"
    g_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "m2m_g")
    g_cfg.TEST.EVAL_PERIOD = 0
    g_cfg.freeze()
    path = os.path.join(g_cfg.OUTPUT_DIR, FINAL_WEIGHTS)
    if not os.path.isfile(path):
        logging.getLogger(__name__).info("M2m: training the ERM classifier g into %s", g_cfg.OUTPUT_DIR)
        ClassificationTrainer(g_cfg).train()
    cfg = cfg.clone()
    cfg.defrost()
    cfg.METHOD.M2M.G_CHECKPOINT = path
    cfg.freeze()
    return cfg


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    if args.eval_only:
        checkpoint = _eval_checkpoint(cfg, args.checkpoint)
        trainer = ClassificationTrainer(cfg, training=False)
        trainer.load_checkpoint(checkpoint, weights_only=True)
        result = trainer.evaluate(tag=args.tag or "eval_only")
        trainer.close()
    else:
        result = ClassificationTrainer(with_frozen_classifier(cfg)).train(resume=not args.no_resume)
    summary = {k: result.get(k) for k in SUMMARY_KEYS}
    print(json.dumps({"method": cfg.METHOD.NAME, "output_dir": cfg.OUTPUT_DIR, **summary}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
