"""The demo baseline is deterministic: two runs of its config with the same seed give identical losses at every
iteration (and another seed gives different ones, so the comparison can fail). Tiny: a 12-image lt_shapes,
4 iterations of batch 2, the demo's one data-loader worker, no evaluation."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("detectron2")
pytest.importorskip("torch")

from detectron2.utils.env import seed_all_rng  # noqa: E402

from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.engine import LTTrainer, build_cfg  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
ITERS = 4
TINY = [
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.MAX_ITER", str(ITERS),
    "SOLVER.WARMUP_ITERS", "2",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "DATASETS.TEST", "()",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_shapes_determinism")
    generate_lt_shapes(str(root), seed=0, num_train_images=12, num_val_images=8)
    yield str(root)
    register_lt_shapes()  # back to the default root for other tests (registration is lazy)


def _losses(root: str, out: str, seed: int) -> dict:
    """{loss name: [value at each iteration]} of a tiny demo-baseline run seeded like tools/demo.py."""
    cfg = build_cfg(DEMO_BASELINE, TINY + ["SEED", str(seed), "DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", out])
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # what default_setup does in tools/demo.py
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    histories = trainer.storage.histories()
    losses = {k: [v for v, _ in h.values()] for k, h in histories.items() if k.startswith("loss") or k == "total_loss"}
    assert losses and all(len(v) == ITERS for v in losses.values()), losses
    return losses


def test_same_seed_gives_identical_losses_other_seed_does_not(tiny_root, tmp_path):
    first = _losses(tiny_root, str(tmp_path / "a"), seed=0)
    second = _losses(tiny_root, str(tmp_path / "b"), seed=0)
    assert first == second, "two runs of the demo baseline with the same seed gave different losses"
    other = _losses(tiny_root, str(tmp_path / "c"), seed=1)
    assert other["total_loss"] != first["total_loss"], "SEED does not reach the run: the comparison proves nothing"
