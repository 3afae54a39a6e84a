"""M2m (Kim et al., CVPR 2020, arXiv:2004.00431):
translation lowers g's loss on the target class; seed choice and rejection follow the rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lt_detectron.classification.m2m import M2mDefaults, m2m_batch, rejection_probability, seed_class_weights, translate


def _nets(seed: int = 0, dim: int = 16, classes: int = 3):
    torch.manual_seed(seed)
    g = nn.Sequential(nn.Linear(dim, 32), nn.Tanh(), nn.Linear(32, classes))
    f = nn.Sequential(nn.Linear(dim, 32), nn.Tanh(), nn.Linear(32, classes))
    return g, f


def test_translation_lowers_g_loss_on_the_target_class():
    g, f = _nets()
    x0 = torch.randn(64, 16)
    seed_classes = g(x0).argmax(1)
    targets = (seed_classes + 1) % 3  # translate every seed towards another class
    before = F.cross_entropy(g(x0), targets, reduction="none")
    x_star = translate(g, f, x0, targets, seed_classes, M2mDefaults(steps=10, step_size=0.1, lam=0.1, noise_std=0.0))
    after = F.cross_entropy(g(x_star), targets, reduction="none")
    assert (after < before).float().mean() > 0.95 and after.mean() < before.mean() - 0.1
    # Each step moves by exactly eta in L2, so T steps stay within T * eta of the seed.
    assert ((x_star - x0).norm(dim=1) <= 10 * 0.1 + 1e-5).all()
    assert not any(p.grad is not None for p in [*g.parameters(), *f.parameters()])  # only x got gradients


def test_translation_leaves_network_modes_untouched():
    g, f = _nets()
    f.train()
    translate(
        g,
        f,
        torch.randn(4, 16),
        torch.zeros(4, dtype=torch.long),
        torch.ones(4, dtype=torch.long),
        M2mDefaults(steps=2),
    )
    assert f.training


def test_rejection_probability_and_seed_class_distribution():
    counts = torch.tensor([1000, 100, 10, 5])
    assert rejection_probability(counts[:1], counts[2:3], 0.99).item() == pytest.approx(0.99**990)
    assert rejection_probability(counts[2:3], counts[:1], 0.99).item() == 1.0  # (n_k0 - n_y)^+ = 0
    targets = torch.tensor([2, 0])
    present = torch.tensor([True, True, True, False])
    q = seed_class_weights(counts, targets, present, beta=0.9)
    # y = 2: only the more frequent classes 0 and 1 qualify; class 3 is absent and less frequent anyway.
    assert q[0, 2] == 0 and q[0, 3] == 0
    assert q[0, 0].item() == pytest.approx(1 - 0.9**990) and q[0, 1].item() == pytest.approx(1 - 0.9**90)
    assert torch.all(q[1] == 0)  # nothing is more frequent than the head class


def _batch(n_per_class: int = 200):
    images = torch.randn(2 * n_per_class, 16)
    targets = torch.tensor([0] * n_per_class + [1] * n_per_class)
    return images, targets


@pytest.mark.parametrize("gamma, expect_all", [(1e9, True), (1e-9, False)])
def test_loss_threshold_gamma(gamma, expect_all):
    g, f = _nets(classes=2)
    images, targets = _batch()
    counts = torch.tensor([1000, 1])  # class 1 is tried with probability 1 - 1/1000
    # beta = 0: the frequency-based rejection never fires, so only gamma decides.
    out, stats = m2m_batch(g, f, images, targets, counts, M2mDefaults(beta=0.0, gamma=gamma, steps=2))
    assert stats["m2m_attempted"] > 150
    changed = (out != images).any(dim=1)
    assert not changed[targets == 0].any()  # the head class is never translated into
    if expect_all:
        assert stats["m2m_accepted"] == stats["m2m_attempted"] == changed.sum()
    else:
        assert stats["m2m_accepted"] == 0 and not changed.any()


def test_beta_near_one_rejects_almost_everything_when_seed_class_dominates():
    g, f = _nets(classes=2)
    images, targets = _batch()
    _, stats = m2m_batch(g, f, images, targets, torch.tensor([1000, 1]), M2mDefaults(beta=1 - 1e-9, gamma=1e9, steps=1))
    assert stats["m2m_attempted"] > 150 and stats["m2m_accepted"] == 0


def test_rejection_rate_matches_beta_power():
    torch.manual_seed(1)
    g, f = _nets(classes=2)
    images, targets = _batch(400)
    beta = 0.5 ** (1 / 999)  # rejection probability beta^(1000 - 1) = 0.5
    _, stats = m2m_batch(g, f, images, targets, torch.tensor([1000, 1]), M2mDefaults(beta=beta, gamma=1e9, steps=1))
    rate = stats["m2m_accepted"] / stats["m2m_attempted"]
    assert 0.4 < rate < 0.6, rate  # 400 Bernoulli(0.5) draws: 5 standard deviations either side


def test_no_attempt_without_a_more_frequent_class_in_the_batch():
    g, f = _nets(classes=2)
    images = torch.randn(50, 16)
    targets = torch.ones(50, dtype=torch.long)  # only the minority class present
    out, stats = m2m_batch(g, f, images, targets, torch.tensor([1000, 1]), M2mDefaults(beta=0.0, gamma=1e9))
    assert stats["m2m_attempted"] == 0 and torch.equal(out, images)


def test_command_line_pretrains_g_with_ce_when_no_checkpoint_is_given(tmp_path):
    """The trainer only loads g (METHOD.M2M.G_CHECKPOINT); training it is the command line's job."""
    import os

    from _cls_train_helpers import tiny_cfg

    from lt_detectron.classification.config import ConfigError, load_config
    from lt_detectron.classification.train import with_frozen_classifier
    from lt_detectron.classification.trainer import FINAL_WEIGHTS, ClassificationTrainer

    cfg = tiny_cfg(tmp_path, "m2m", "SOLVER.EPOCHS", "1", "METHOD.M2M.START_EPOCH", "0")
    with pytest.raises(ConfigError, match="METHOD.M2M.G_CHECKPOINT"):
        ClassificationTrainer(cfg)
    g_weights = os.path.join(tmp_path, "m2m_g", FINAL_WEIGHTS)
    with_g = with_frozen_classifier(cfg)
    assert with_g.METHOD.M2M.G_CHECKPOINT == g_weights and os.path.isfile(g_weights)
    assert load_config(os.path.join(tmp_path, "m2m_g", "config.yaml")).METHOD.NAME == "ce"  # ERM, same recipe
    assert with_frozen_classifier(tiny_cfg(tmp_path / "ce", "ce")).METHOD.M2M.G_CHECKPOINT == ""  # only for M2m
    trainer = ClassificationTrainer(with_g)
    g = trainer.method._g[0]
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    saved = torch.load(g_weights, weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in g.state_dict().items())
    assert not any(k.startswith("_g") for k in trainer.method.state_dict())  # g is an input, not trained state
