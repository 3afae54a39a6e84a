"""Train or evaluate a long-tailed classifier from a YAML config.

    python -m lt_detectron.classification.train --config configs/classification/digits_lt_lade.yaml [KEY VALUE ...]
    python -m lt_detectron.classification.train --config FILE --eval-only [--checkpoint PATH] [KEY VALUE ...]

Training resumes from OUTPUT_DIR/last.pth when it exists (``--no-resume`` starts over). ``--eval-only`` loads
``--checkpoint`` (default: OUTPUT_DIR/model_final.pth, else OUTPUT_DIR/last.pth) and writes OUTPUT_DIR/eval/<tag>/.
Overrides are `KEY VALUE` pairs, as in Detectron2's tools/train_net.py (the old `KEY=VALUE` still works, with a
warning). Every key and its default: lt_detectron/classification/config.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from .config import load_config, parse_overrides
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
        help="config overrides as KEY VALUE pairs, e.g. SOLVER.EPOCHS 10 (KEY=VALUE is deprecated)",
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


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, parse_overrides(args.overrides))
    if args.eval_only:
        checkpoint = _eval_checkpoint(cfg, args.checkpoint)
        trainer = ClassificationTrainer(cfg, training=False)
        trainer.load_checkpoint(checkpoint, weights_only=True)
        result = trainer.evaluate(tag=args.tag or "eval_only")
        trainer.close()
    else:
        result = ClassificationTrainer(cfg).train(resume=not args.no_resume)
    summary = {k: result.get(k) for k in SUMMARY_KEYS}
    print(json.dumps({"method": cfg.METHOD.NAME, "output_dir": cfg.OUTPUT_DIR, **summary}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
