"""Checkpoints: training 2 steps + resume + the rest equals an uninterrupted run exactly (params, optimizer, RNG)."""

from __future__ import annotations

import csv
import os

import pytest
import torch
from _cls_train_helpers import tiny_cfg

from lt_detectron.classification.models import build_model
from lt_detectron.classification.trainer import CHECKPOINT, ClassificationTrainer

# 4 batches per epoch: stopping at step 2 and 6 lands mid-epoch, the runs cross the epoch boundary (lr decay,
# DRS switch to class-balanced batches) in between.
EXTRA = ["DATALOADER.DRS_START_EPOCH", "1", "METHOD.META.START_EPOCH", "0", "METHOD.M2M.START_EPOCH", "0"]


def _make(out, method):
    cfg = tiny_cfg(out, method, *EXTRA)
    torch.manual_seed(123)  # the same g for both runs; g is an input of M2m, not part of its state
    g = build_model("digits_mlp", 10) if method == "m2m" else None
    return ClassificationTrainer(cfg, frozen_classifier=g)


@pytest.mark.parametrize("method", ["ce", "lda", "meta_ce", "m2m"])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, method):
    straight = _make(tmp_path / "straight", method)
    assert straight.iters_per_epoch == 4
    straight.train(max_steps=6)
    rng_straight = torch.get_rng_state()

    first = _make(tmp_path / "split", method)
    assert first.train(max_steps=2) is None and first.global_step == 2
    assert os.path.isfile(os.path.join(tmp_path / "split", CHECKPOINT))
    torch.manual_seed(999)  # a different global RNG before resuming: the checkpoint must restore it
    resumed = _make(tmp_path / "split", method)
    resumed.train(max_steps=6)
    assert torch.equal(torch.get_rng_state(), rng_straight), "global RNG not restored / consumed differently"
    assert (resumed.epoch, resumed.iter_in_epoch, resumed.global_step) == (1, 2, 6)

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{method}: model tensor {name} differs after resume"
    for (name, a), b in zip(straight.method.state_dict().items(), resumed.method.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f"{method}: method tensor {name} differs after resume"
    mom_a = [s["momentum_buffer"] for s in straight.optimizer.state.values()]
    mom_b = [s["momentum_buffer"] for s in resumed.optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(mom_a, mom_b))
    if method == "lda":
        assert straight.method.lda_loss.balancer.state_dict() == resumed.method.lda_loss.balancer.state_dict()
    if method == "meta_ce":
        assert straight.method.dev_sampler.state_dict() == resumed.method.dev_sampler.state_dict()
        assert straight.method.reweighter.meta_steps == resumed.method.reweighter.meta_steps == 6

    # metrics.csv: the epoch-1 row once, as in the straight run.
    rows = lambda d: [r[:3] for r in csv.reader(open(os.path.join(d, "metrics.csv")))]  # noqa: E731
    assert rows(tmp_path / "split") == rows(tmp_path / "straight")


def test_checkpoint_writes_are_atomic_and_complete(tmp_path):
    trainer = _make(tmp_path, "ce")
    trainer.train(max_steps=1)
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp" in f]
    assert not leftovers
    state = torch.load(os.path.join(tmp_path, CHECKPOINT), weights_only=True)  # loads on torch >= 2.6 too
    assert {"model", "method", "optimizer", "scheduler", "rng", "epoch", "iter_in_epoch", "global_step"} <= set(state)
    assert set(state["rng"]) >= {"python", "numpy", "torch"}


def test_missing_checkpoint_error_names_the_path(tmp_path):
    trainer = _make(tmp_path, "ce")
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        trainer.load_checkpoint(str(tmp_path / "nothing.pth"))
