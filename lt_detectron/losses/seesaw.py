"""Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021, arXiv:2008.10032).

For a sample of class i every other class j's logit is shifted by log S_ij, S_ij = M_ij C_ij, before a softmax
cross-entropy: the mitigation factor M_ij = (N_j / N_i)^p where N_j < N_i (else 1) lowers the penalty a frequent class
i puts on a rarer class j, and the compensation factor C_ij = (sigma_j / sigma_i)^q where sigma_j > sigma_i (else 1)
restores it where class j is already more probable than the true class (sigma: softmax of the detached logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..utils import torch_compat
from ._validation import ArrayLike, check_counts, check_logits_targets, check_reduction, on_host, reduce_loss


@dataclass(frozen=True)
class SeesawDefaults:
    """Paper defaults of the Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021,
    arXiv:2008.10032): p 0.8 (mitigation), q 2.0 (compensation), eps 1e-2 (the floor of the true class's probability
    in the compensation ratio), and cosine_scale 20, the temperature of the normalised linear classifier that the
    paper's configs pair with the loss (logits = 20 cos(w_c, x)).

    Attributes:
        p: mitigation exponent.
        q: compensation exponent.
        eps: floor of the true class's probability in the compensation ratio.
        cosine_scale: scale of the cosine classifier's logits.
    """

    p: float = 0.8
    q: float = 2.0
    eps: float = 1e-2
    cosine_scale: float = 20.0


SEESAW_DEFAULTS = SeesawDefaults()


def accumulate_class_counts(counts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """In place: add each class's number of samples in `targets` to `counts` (Seesaw's cumulative N_c).

    Call it before `seesaw_loss` on the same batch, as the paper's counts include the current batch. Reads nothing
    back to the host (an `index_add_`, not `bincount`).

    Args:
        counts: 1-D tensor of length C (floating or integer), updated in place.
        targets: integer class indices in [0, C), any shape.

    Returns:
        `counts`, updated.
    """
    fn = "accumulate_class_counts"
    if not isinstance(counts, torch.Tensor) or counts.dim() != 1:
        raise ValueError(
            f"{fn}: `counts` must be a 1-D tensor of per-class counts, updated in place; got "
            f"{tuple(counts.shape) if isinstance(counts, torch.Tensor) else type(counts).__name__}. "
            "Fix: keep one tensor, e.g. torch.zeros(C, dtype=torch.float64), and pass it on every step."
        )
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.is_complex():
        got = targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"{fn}: `targets` must be an integer tensor of class indices; got {got}. Fix: targets.long().")
    flat = targets.reshape(-1).long()
    return counts.index_add_(0, flat, torch.ones_like(flat, dtype=counts.dtype))


def seesaw_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    counts: ArrayLike,
    p: float = SEESAW_DEFAULTS.p,
    q: float = SEESAW_DEFAULTS.q,
    eps: float = SEESAW_DEFAULTS.eps,
    reduction: str = "mean",
) -> torch.Tensor:
    """Seesaw loss `CE(z_n + log S_{y_n}, y_n)` (Wang et al. 2021: sigma-hat_i with S_ij = M_ij C_ij, S_ii = 1).

    `log S_ij = p min(log N_j - log N_i, 0) + q max(log sigma_j - log max(sigma_i, eps), 0)` for j != i, with
    sigma = softmax of the detached logits: the factors shape the gradient and carry none themselves. The compensation
    compares sigma_j with the clamped sigma_i, so C_ij > 1 exactly where sigma_j > max(sigma_i, eps).

    Args:
        logits: (N, C) class logits (detection: the caller handles the background).
        targets: (N,) integer class indices in [0, C).
        counts: length-C cumulative per-class sample counts N_c, already including this batch (the caller
            accumulates, e.g. with `accumulate_class_counts`); clamped at 1 inside, so an unseen class counts once.
            Keep them on the logits' device: on an accelerator their values are not checked (a read-back would stall
            every call), on the CPU they must be finite and >= 0.
        p: mitigation exponent (>= 0; 0 switches the factor off).
        q: compensation exponent (>= 0; 0 switches the factor off).
        eps: floor of sigma_i in the compensation ratio, in (0, 1].
        reduction: "mean" (batch mean), "sum" or "none" (per sample).

    Returns:
        The loss: a scalar, or (N,) for reduction="none"; float32 for float16/bfloat16 logits.
    """
    fn = "seesaw_loss"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    for name, value in (("p", p), ("q", q)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{fn}: `{name}` must be finite and >= 0 (0 switches its factor off); got {value}.")
    if not 0 < eps <= 1:
        raise ValueError(f"{fn}: `eps` must lie in (0, 1] (a floor of the true class's probability); got {eps}.")
    num_classes = logits.shape[1]
    counts = _clamped_counts(counts, num_classes, fn, logits)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # autocast half logits: float32 inside
    if targets.numel() == 0:
        return reduce_loss(logits.sum(dim=1), reduction)
    if torch_compat.functorch_transforms_active():
        # torch.func (the meta-weighting engine differentiates losses twice): plain autograd ops.
        shifted = logits + _log_seesaw_factors(logits, targets, counts.log(), p, q, eps)
        per_example = F.cross_entropy(shifted, targets, reduction="none")
    else:
        # M's row of the true class as min(m_j, m_i) / m_i with m = (N / max N)^p, a (C,) vector in (0, 1].
        mitigation = (counts / counts.max()).pow_(p).to(logits.dtype) if p != 0 else None
        per_example = _SeesawFunction.apply(logits, targets, mitigation, float(q), float(eps))
    return reduce_loss(per_example, reduction)


def _clamped_counts(counts: ArrayLike, num_classes: int, fn: str, like: torch.Tensor) -> torch.Tensor:
    """max(N_c, 1) as float64 on `like`'s device; values checked only where reading them is free."""
    if not isinstance(counts, torch.Tensor) or on_host(counts):
        tensor = check_counts(counts, fn, num_classes=num_classes)
    else:
        if counts.dim() != 1 or counts.numel() != num_classes:
            raise ValueError(
                f"{fn}: `counts` must have shape (C,) = ({num_classes},) to match the logits; got "
                f"{tuple(counts.shape)}. Fix: one cumulative sample count per logit column."
            )
        tensor = counts.to(torch.float64)
    return tensor.to(like.device).clamp_min(1.0)


def _log_seesaw_factors(
    logits: torch.Tensor, targets: torch.Tensor, log_counts: torch.Tensor, p: float, q: float, eps: float
) -> torch.Tensor:
    """(N, C) log S_{y_n j}, zero in the target column, from detached logits (the composed path)."""
    index = targets[:, None]
    log_n = log_counts.to(logits.dtype)
    log_mitigation = (log_n[None, :] - log_n[targets][:, None]).clamp_max(0.0).mul(p)
    log_sigma = torch.log_softmax(logits.detach(), dim=1)
    log_floor = log_sigma.gather(1, index).clamp_min(math.log(eps))
    return log_mitigation + (log_sigma - log_floor).clamp_min(0.0).mul(q)


class _SeesawFunction(torch.autograd.Function):
    """Per-example Seesaw loss with a hand-written gradient: one exp pass over the (N, C) logits.

    With sigma = softmax(z) (detached), v_n = max(sigma_{n y}, eps) and the mitigation vector m_c = N_c^p / max N^p,
    the seesaw-shifted softmax of row n is proportional to
        F_nj = sigma_nj * max(sigma_nj, v_n)^q * min(m_j, m_y),
    which is e^{z_nj} S_{y j} up to a factor constant along the row (S_yy = 1 gives the target column
    sigma_ny v_n^q m_y); no second exp. The loss is log sum_j F_nj - log F_ny, with log sigma_ny in log F_ny taken
    from the logits (z_ny - logsumexp z_n), so it stays finite when sigma_ny underflows. S is a constant of the
    gradient, so dL_n/dz_nj = g_n (F_nj / sum_j F_nj - [j = y_n]); the backward pass scales the saved F by
    g_n / sum_j F_nj in one pass. F <= 1, and a row's largest F is at least eps^q min_c m_c / C (1e-12 at the defaults
    with 1000 classes and counts spanning 1e6), so the row sums stay far from float32's limits. Cross-entropy makes two
    exp passes (forward and backward). Not twice differentiable: under torch.func transforms `seesaw_loss` uses the
    composed form.
    """

    @staticmethod
    def forward(ctx, logits, targets, mitigation, q, eps):
        index = targets[:, None]
        probs = torch.softmax(logits, dim=1)
        # F_ny / sigma_ny = v^q m_y, times max_j sigma_nj: with logsumexp_n = max_j z_nj - log max_j sigma_nj (the same
        # j, where sigma >= 1/C cannot underflow), log F_ny = z_ny - max_j z_nj + log(target_scale).
        target_scale = probs.amax(dim=1)
        if q != 0:
            floor = probs.gather(1, index).squeeze(1).clamp_min_(eps)  # v_n
            weighted = torch.maximum(probs, floor[:, None])
            if q != 1:
                weighted.pow_(q)
            weighted.mul_(probs)
            target_scale.mul_(floor.pow_(q))
        else:
            weighted = probs
        if mitigation is not None:
            target_mitigation = mitigation.index_select(0, targets)
            # min(m_j, m_y), written into the softmax buffer when it is free (no new (N, C) buffer)
            factor = torch.minimum(mitigation[None, :], target_mitigation[:, None], out=probs if q != 0 else None)
            weighted.mul_(factor)
            target_scale.mul_(target_mitigation)
        total = weighted.sum(dim=1)
        ctx.save_for_backward(weighted, total, targets)
        # log sum_j F_nj - log F_ny
        return (total / target_scale).log_().sub_(logits.gather(1, index).squeeze(1)).add_(logits.amax(dim=1))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_example):
        weighted, total, targets = ctx.saved_tensors
        grad = weighted * (grad_per_example / total)[:, None]
        grad.scatter_add_(1, targets[:, None], -grad_per_example[:, None])
        return grad, None, None, None, None
