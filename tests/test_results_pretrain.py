"""Pre-trained regime: the balanced split, tools/pretrain_backbone.py (deterministic, cached), and the pre-trained
demo configs loading its backbone through MODEL.WEIGHTS before a short training run."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

import pytest
from _scripts import load_script

pytest.importorskip("detectron2")
torch = pytest.importorskip("torch")

from detectron2.utils.env import seed_all_rng  # noqa: E402

from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.data.lt_shapes import category_names, plan_balanced, plan_lt_shapes  # noqa: E402
from lt_detectron.engine import LTTrainer, build_cfg  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED_BASELINE = os.path.join(REPO, "configs", "demo", "pretrained", "lt_shapes_baseline.yaml")
TINY_PRETRAIN = ["--iters", "3", "--images-per-class", "2", "--batch", "8", "--holdout", "0.5"]


def _tool(name: str):
    return load_script(f"tools/{name}.py", f"lt_tools_{name}")


@pytest.fixture(scope="module")
def pretrain():
    return _tool("pretrain_backbone")


@pytest.fixture(scope="module")
def checkpoint(pretrain, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pretrain") / "backbone.pth")
    assert pretrain.main(TINY_PRETRAIN + ["--out", path]) == 0
    return path


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_balanced_plan_puts_every_class_in_the_same_number_of_images():
    plan = plan_balanced(images_per_class=7, seed=5)
    counts = Counter(c for classes in plan for c in set(classes))
    assert set(counts) == set(range(len(category_names()))) and set(counts.values()) == {7}
    assert {len(objs) for objs in plan} <= set(range(1, 7))
    # another seed than the demo data's, and not a copy of the long-tailed split's layout
    assert plan != plan_lt_shapes()["train"][: len(plan)]
    with pytest.raises(ValueError, match="images_per_class >= 1"):
        plan_balanced(0)


def test_crops_are_class_balanced_at_the_detection_scale(pretrain):
    crops, labels = pretrain.object_crops(seed=1000, images_per_class=2, window=64, shift=4)
    assert crops.dtype == torch.uint8 and tuple(crops.shape[1:]) == (3, 72, 72)
    assert len(set(torch.bincount(labels).tolist())) == 1 and int(labels.max()) == len(category_names()) - 1


def test_pretraining_is_deterministic_and_cached(pretrain, checkpoint, tmp_path, capsys):
    again = str(tmp_path / "again.pth")
    assert pretrain.main(TINY_PRETRAIN + ["--out", again]) == 0
    assert _sha(again) == _sha(checkpoint)  # same settings and threads: the same file
    with open(checkpoint + ".json") as f:
        meta = json.load(f)
    assert meta["sha256"] == _sha(checkpoint) and meta["settings"]["iters"] == 3
    capsys.readouterr()
    assert pretrain.main(TINY_PRETRAIN + ["--out", checkpoint]) == 0
    assert "exists with these settings" in capsys.readouterr().out  # reused, not retrained
    state = torch.load(checkpoint, map_location="cpu")["model"]
    assert state and all(k.startswith("backbone.bottom_up.") for k in state)


def test_pretrained_config_loads_the_backbone_and_trains(checkpoint, tmp_path):
    root = tmp_path / "lt_shapes"
    generate_lt_shapes(str(root), seed=0, num_train_images=12, num_val_images=8)
    opts = ["MODEL.WEIGHTS", checkpoint, "DATASETS.LT_SHAPES_DIR", str(root), "OUTPUT_DIR", str(tmp_path / "out")]
    opts += ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0"]
    try:
        cfg = build_cfg(PRETRAINED_BASELINE, opts)
        cfg.freeze()
        seed_all_rng(0)
        trainer = LTTrainer(cfg)
        trainer.resume_or_load(resume=False)
        loaded = torch.load(checkpoint, map_location="cpu")["model"]
        model_state = trainer.model.state_dict()
        bottom_up = [k for k in model_state if k.startswith("backbone.bottom_up.")]
        assert sorted(bottom_up) == sorted(loaded)  # every backbone tensor comes from the checkpoint
        for key in bottom_up:
            assert torch.equal(model_state[key], loaded[key]), key
        trainer.train()
        losses = trainer.storage.history("total_loss").values()
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(v)) for v, _ in losses)
    finally:
        register_lt_shapes()


def test_demo_names_the_pretraining_command_when_weights_are_missing(tmp_path, monkeypatch):
    demo = _tool("demo")
    monkeypatch.chdir(tmp_path)
    cfg = build_cfg(PRETRAINED_BASELINE, ["MODEL.WEIGHTS", "output/pretrained/missing.pth"])
    with pytest.raises(FileNotFoundError, match="tools/pretrain_backbone.py"):
        demo._resolve_weights(cfg)
    cfg = build_cfg(PRETRAINED_BASELINE, ["MODEL.WEIGHTS", "configs/demo/lt_shapes_base.yaml"])  # exists in the repo
    demo._resolve_weights(cfg)
    assert cfg.MODEL.WEIGHTS == os.path.join(REPO, "configs", "demo", "lt_shapes_base.yaml")
