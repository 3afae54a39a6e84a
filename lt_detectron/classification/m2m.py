"""M2m: major-to-minor translation with a frozen ERM classifier g (Kim et al., CVPR 2020,
arXiv:2004.00431, Algorithm 1, batch-wise).

For each sample (x_i, y_i) of a class-balanced batch, with probability 1 - n_{y_i} / n_max, a seed x0 of a more
frequent class k0 present in the batch is translated towards y_i by T normalised gradient steps on
`CE(g(x), y_i) + lambda * f_{k0}(x)`; the result replaces x_i unless rejected (probability beta^{(n_k0 - n_y)^+},
or g's loss on y_i still above gamma).

This module is the algorithm and its defaults record (`M2M_DEFAULTS`, read by the config). The method that uses it
is `methods.m2m.M2mMethod`; g itself, a CE run of the same architecture, is METHOD.M2M.G_CHECKPOINT or is trained
first by the command line (`train.train_frozen_classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["M2mDefaults", "M2M_DEFAULTS", "seed_class_weights", "rejection_probability", "translate", "m2m_batch"]


@dataclass(frozen=True)
class M2mDefaults:
    """Paper defaults of M2m (Kim et al., CVPR 2020, arXiv:2004.00431; CIFAR-LT, 200 epochs); the config
    (`METHOD.M2M.*`) reads them and the algorithm takes a record built from it.

    Args:
        start_epoch: deferred start: plain ERM before it.
        steps: T, translation steps.
        step_size: eta, the normalised step.
        beta: rejection base of beta^{(n_k0 - n_y)^+}; searched in {0.9, 0.99, 0.999}.
        lam: lambda, weight of the seed-class logit f_{k0}(x); searched in {0.01, 0.1, 0.5}.
        gamma: reject a translation whose g loss on y_i is above it; searched in {0.9, 0.99}.
        noise_std: std of the Gaussian noise added to x0 before the T steps.
    """

    start_epoch: int = 160
    steps: int = 10
    step_size: float = 0.1
    beta: float = 0.999
    lam: float = 0.1
    gamma: float = 0.99
    noise_std: float = 0.01


M2M_DEFAULTS = M2mDefaults()


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


def translate(
    g: nn.Module, f: nn.Module, x0: Tensor, targets: Tensor, seed_classes: Tensor, params: M2mDefaults
) -> Tensor:
    """T steps of `x <- x - eta * d / ||d||_2`, `d = grad_x [CE(g(x), y) + lambda * f_{k0}(x)]`, from `x0 + noise`.

    Both networks run in eval mode (no BatchNorm statistics from synthetic inputs); only x receives gradients.
    """
    modes = _frozen_eval(g, f)
    try:
        x = (x0.detach() + params.noise_std * torch.randn_like(x0)).requires_grad_(True)
        for _ in range(params.steps):
            with torch.enable_grad():
                # Per-sample objectives summed: each sample's gradient only depends on its own loss.
                objective = F.cross_entropy(g(x), targets, reduction="sum")
                objective = objective + params.lam * f(x).gather(1, seed_classes[:, None]).sum()
                (grad,) = torch.autograd.grad(objective, x)
            norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (x.dim() - 1)))
            x = (x - params.step_size * grad / norm).detach().requires_grad_(True)
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
    g: nn.Module, f: nn.Module, images: Tensor, targets: Tensor, counts: Tensor, params: M2mDefaults
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
    q = seed_class_weights(counts, targets, present, params.beta)
    attempt &= q.sum(dim=1) > 0  # needs a more frequent class in the batch
    stats = {"m2m_attempted": float(attempt.sum()), "m2m_accepted": 0.0}
    if not attempt.any():
        return images, stats

    rows = attempt.nonzero().squeeze(1)
    seed_classes = torch.multinomial(q[rows], 1).squeeze(1)
    # Seed x0: a uniformly chosen batch sample of class k0.
    same_class = (targets[None, :] == seed_classes[:, None]).float()
    seed_index = torch.multinomial(same_class, 1).squeeze(1)
    x_star = translate(g, f, images[seed_index], targets[rows], seed_classes, params)

    reject = torch.rand(rows.numel(), device=images.device, dtype=torch.float64) < rejection_probability(
        counts[seed_classes], counts[targets[rows]], params.beta
    )
    reject |= _g_loss(g, x_star, targets[rows]) > params.gamma
    keep = ~reject
    out = images.clone()
    out[rows[keep]] = x_star[keep].to(out.dtype)
    stats["m2m_accepted"] = float(keep.sum())
    return out, stats
