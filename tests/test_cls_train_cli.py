"""CLI smoke: `python -m lt_detectron.classification.train --config FILE [KEY VALUE ...]` and `--eval-only`."""

from __future__ import annotations

import json
import os

import pytest
from _cls_train_helpers import TINY

from lt_detectron.classification import train as cli
from lt_detectron.classification.config import ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs", "classification")


def _overrides(out):
    """KEY VALUE pairs (Detectron2's syntax)."""
    drop = ("TEST.PLOTS", "LOG.TENSORBOARD", "CHECKPOINT_PERIOD")
    pairs = [(k, v) for k, v in zip(TINY[0::2], TINY[1::2]) if k not in drop]
    pairs += [("SOLVER.EPOCHS", "1"), ("OUTPUT_DIR", str(out)), ("TEST.PLOTS", "True"), ("LOG.TENSORBOARD", "True")]
    return [t for pair in pairs for t in pair]


def test_train_then_eval_only(tmp_path, capsys):
    config = os.path.join(CONFIGS, "digits_lt_lade.yaml")
    cli.main(["--config", config, *_overrides(tmp_path)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "lade" and 0 <= summary["bacc"] <= 100
    for name in (
        "config.yaml",
        "metrics.csv",
        "last.pth",
        "model_final.pth",
        "eval/final/eval.json",
        "eval/final/eval_reliability.png",
        "eval/final/eval_confusion.png",
    ):
        assert os.path.isfile(tmp_path / name), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
    final = json.load(open(tmp_path / "eval/final/eval.json"))
    assert "forward_injected" in final["shifted_prior"]  # with and without target-prior injection

    cli.main(["--config", config, "--eval-only", *_overrides(tmp_path)])
    again = json.load(open(tmp_path / "eval/eval_only/eval.json"))
    assert again["top1"] == final["top1"] and again["per_class_recall"] == final["per_class_recall"]

    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        cli.main(["--config", config, "--eval-only", *_overrides(tmp_path / "empty")])


def test_every_shipped_config_loads_and_names_a_known_method():
    from lt_detectron.classification.methods import METHOD_REGISTRY

    names = sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml"))
    assert {
        "cifar100_lt_lade.yaml",
        "cifar100_lt_lda.yaml",
        "cifar10_lt_meta.yaml",
        "cifar10_lt_m2m.yaml",
        "imagenet_lt_lade.yaml",
    } <= set(names)
    digits = {
        n[len("digits_lt_") : -len(".yaml")] for n in names if n.startswith("digits_lt_") and n != "digits_lt_base.yaml"
    }
    assert digits == set(METHOD_REGISTRY.names())  # one digits config per method
    for name in names:
        cfg = load_config(os.path.join(CONFIGS, name))
        assert cfg.METHOD.NAME in METHOD_REGISTRY, name


def test_bad_override_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="'SOLVER.EPOCHS' has no value; give KEY VALUE pairs"):
        cli.main(["--config", os.path.join(CONFIGS, "digits_lt_ce.yaml"), "SOLVER.EPOCHS"])
