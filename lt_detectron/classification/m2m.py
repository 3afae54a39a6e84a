"""M2m: major-to-minor translation with a frozen ERM classifier g (Kim et al., CVPR 2020,
arXiv:2004.00431, Algorithm 1, batch-wise).

For each sample (x_i, y_i) of a class-balanced batch, with probability 1 - n_{y_i} / n_max, a seed x0 of a more
frequent class k0 present in the batch is translated towards y_i by T normalised gradient steps on
`CE(g(x), y_i) + lambda * f_{k0}(x)`; the result replaces x_i unless rejected (probability beta^{(n_k0 - n_y)^+},
or g's loss on y_i still above gamma).

g itself (`load_frozen_classifier`) is a CE run of the same architecture: METHOD.M2M.G_CHECKPOINT, or trained
first into OUTPUT_DIR/m2m_g (`train_frozen_classifier`).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "M2mConfig",
    "seed_class_weights",
    "rejection_probability",
    "translate",
    "m2m_batch",
    "g_config",
    "train_frozen_classifier",
    "load_frozen_classifier",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class M2mConfig:
    steps: int = 10  # T
    step_size: float = 0.1  # eta
    beta: float = 0.999
    lam: float = 0.1
    gamma: float = 0.99
    noise_std: float = 0.01


def rejection_probability(n_seed: Tensor, n_target: Tensor, beta: float) -> Tensor:
    """beta^{(n_k0 - n_y)^+}: the chance a translation from class k0 to class y is thrown away."""
    return beta ** (n_seed - n_target).clamp(min=0).to(torch.float64)


def seed_class_weights(counts: Tensor, targets: Tensor, present: Tensor, beta: float) -> Tensor:
    """Q(k0 | y_i) ∝ 1 - beta^{(n_k0 - n_{y_i})^+} over the classes present in the batch, one row per sample (B, C).

    Rows are unnormalised; a row of zeros means no class in the batch is more frequent than y_i.
    """
    q = 1.0 - rejection_probability(counts[None, :], counts[targets][:, None], beta)
    return (q * present[None, :].to(q.dtype)).float()


def _frozen_eval(*modules: nn.Module) -> list[bool]:
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    return modes


def translate(g: nn.Module, f: nn.Module, x0: Tensor, targets: Tensor, seed_classes: Tensor, cfg: M2mConfig) -> Tensor:
    """T steps of `x <- x - eta * d / ||d||_2`, `d = grad_x [CE(g(x), y) + lambda * f_{k0}(x)]`, from `x0 + noise`.

    Both networks run in eval mode (no BatchNorm statistics from synthetic inputs); only x receives gradients.
    """
    modes = _frozen_eval(g, f)
    try:
        x = (x0.detach() + cfg.noise_std * torch.randn_like(x0)).requires_grad_(True)
        for _ in range(cfg.steps):
            with torch.enable_grad():
                # Per-sample objectives summed: each sample's gradient only depends on its own loss.
                objective = F.cross_entropy(g(x), targets, reduction="sum")
                objective = objective + cfg.lam * f(x).gather(1, seed_classes[:, None]).sum()
                (grad,) = torch.autograd.grad(objective, x)
            norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (x.dim() - 1)))
            x = (x - cfg.step_size * grad / norm).detach().requires_grad_(True)
    finally:
        for m, mode in zip((g, f), modes):
            m.train(mode)
    return x.detach()


@torch.no_grad()
def _g_loss(g: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    (mode,) = _frozen_eval(g)
    loss = F.cross_entropy(g(x), targets, reduction="none")
    g.train(mode)
    return loss


def m2m_batch(
    g: nn.Module, f: nn.Module, images: Tensor, targets: Tensor, counts: Tensor, cfg: M2mConfig
) -> tuple[Tensor, dict[str, float]]:
    """Replace some samples of a (class-balanced) batch by translations of majority seeds; returns (images, stats).

    `counts` holds n_c for every class (on the batch's device). Labels never change: a translated sample keeps y_i.
    """
    counts = counts.to(images.device)
    batch = targets.shape[0]
    n_target = counts[targets].float()
    attempt = torch.rand(batch, device=images.device) < (1.0 - n_target / counts.max().float())
    present = torch.zeros_like(counts, dtype=torch.bool)
    present[targets] = True
    q = seed_class_weights(counts, targets, present, cfg.beta)
    attempt &= q.sum(dim=1) > 0  # needs a more frequent class in the batch
    stats = {"m2m_attempted": float(attempt.sum()), "m2m_accepted": 0.0}
    if not attempt.any():
        return images, stats

    rows = attempt.nonzero().squeeze(1)
    seed_classes = torch.multinomial(q[rows], 1).squeeze(1)
    # Seed x0: a uniformly chosen batch sample of class k0.
    same_class = (targets[None, :] == seed_classes[:, None]).float()
    seed_index = torch.multinomial(same_class, 1).squeeze(1)
    x_star = translate(g, f, images[seed_index], targets[rows], seed_classes, cfg)

    reject = torch.rand(rows.numel(), device=images.device, dtype=torch.float64) < rejection_probability(
        counts[seed_classes], counts[targets[rows]], cfg.beta
    )
    reject |= _g_loss(g, x_star, targets[rows]) > cfg.gamma
    keep = ~reject
    out = images.clone()
    out[rows[keep]] = x_star[keep].to(out.dtype)
    stats["m2m_accepted"] = float(keep.sum())
    return out, stats


def g_config(cfg):
    """The config that trains M2m's classifier g: the same run with METHOD.NAME ce, under OUTPUT_DIR/m2m_g."""
    g_cfg = copy.deepcopy(cfg)
    g_cfg.defrost()
    g_cfg.METHOD.NAME = "ce"
    g_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "m2m_g")
    g_cfg.TEST.EVAL_PERIOD = 0
    g_cfg.freeze()
    return g_cfg


def train_frozen_classifier(cfg) -> str:
    """Train M2m's g (ERM, same config, method ce) unless its weights already exist; returns their path."""
    from .trainer import FINAL_WEIGHTS, ClassificationTrainer

    g_cfg = g_config(cfg)
    path = os.path.join(g_cfg.OUTPUT_DIR, FINAL_WEIGHTS)
    if not os.path.isfile(path):
        logger.info("M2m: training the ERM classifier g into %s", g_cfg.OUTPUT_DIR)
        ClassificationTrainer(g_cfg).train()
    return path


def load_frozen_classifier(cfg, num_classes: int) -> nn.Module:
    """M2m's g: the same architecture with a linear classifier, weights from METHOD.M2M.G_CHECKPOINT (or trained).

    The file is read with `torch.load(weights_only=True)`: a state dict, or a dict with a "model" entry.
    """
    from .models import build_model
    from .trainer import FINAL_WEIGHTS

    path = cfg.METHOD.M2M.G_CHECKPOINT or train_frozen_classifier(cfg)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"METHOD.M2M.G_CHECKPOINT={path!r} does not exist; give the {FINAL_WEIGHTS} of a CE "
            "run of the same model, or leave it empty to train g first"
        )
    g = build_model(cfg.MODEL.NAME, num_classes, **{k.lower(): v for k, v in cfg.MODEL.ARGS.items()})
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        g.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except (RuntimeError, KeyError) as err:
        raise ValueError(
            f"METHOD.M2M.G_CHECKPOINT={path!r} does not fit model {cfg.MODEL.NAME!r} with a linear "
            f"classifier ({err}); g must be a CE (method ce) run of the same architecture"
        ) from None
    return g.to(cfg.DEVICE).eval().requires_grad_(False)
