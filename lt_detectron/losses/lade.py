"""Balanced softmax (LADE-CE), LADER, LADE and PC Softmax (METHODS §3-4, seed 003)."""

from __future__ import annotations

import math

import torch

from ._fused import shifted_cross_entropy
from ._validation import ArrayLike, check_class_weight, check_logits_targets, check_prior, check_reduction, reduce_loss

IMPORTANCE_KINDS = ("label", "column")


def balanced_softmax_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """LADE-CE / balanced softmax `CE(z + log p_s, y)` (METHODS §4; seed 003 eq. 18-19, Ren et al. 2020)."""
    fn = "balanced_softmax_loss"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    prior = check_prior(prior, logits.shape[1], fn, logits)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    per_example = shifted_cross_entropy(logits, targets, column_shift=prior.log())
    if weight is not None:
        per_example = per_example * weight[targets]
    return reduce_loss(per_example, reduction)


def lader(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: ArrayLike,
    lam: float = 0.1,
    importance: str = "label",
) -> torch.Tensor:
    """LADER regulariser, a batch-level scalar (METHODS §4; seed 003 eq. 11-16 with alpha_c = p_s(c)).

    importance="label": eq. 13, sample i weighted by p_u(y_i)/p_s(y_i), summed over classes present in the batch.
    importance="column": the authors' public code, exp(z_i[c]) weighted by p_u(c)/p_s(c), summed over all C.
    An empty batch gives 0.
    """
    fn = "lader"
    _check_importance(importance, fn)
    targets = check_logits_targets(logits, targets, fn)
    prior = check_prior(prior, logits.shape[1], fn, logits)
    return _lade(logits, targets, prior, prior.log(), 0.0, 1.0, lam, importance)


def _check_importance(importance: str, fn: str) -> None:
    if importance not in IMPORTANCE_KINDS:
        raise ValueError(f"{fn}: importance must be one of {IMPORTANCE_KINDS}; got {importance!r}.")


def _lade(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: torch.Tensor,
    log_prior: torch.Tensor,
    ce_weight: float,
    lader_weight: float,
    lam: float,
    importance: str,
) -> torch.Tensor:
    """`ce_weight * L_LADE-CE + lader_weight * L_LADER` on validated inputs."""
    batch_size, num_classes = logits.shape
    if batch_size == 0:
        return logits.sum()
    logits = logits.to(prior.dtype)  # float16/bfloat16 (autocast) logits: the fused exp/log run in float32
    log_uniform = -math.log(num_classes)
    samples_per_class = torch.bincount(targets, minlength=num_classes)
    if importance == "label":
        log_importance = (log_uniform - log_prior[targets])[:, None]  # p_u(y_i) / p_s(y_i), eq. 13
        class_weight = torch.where(samples_per_class > 0, prior, 0.0)  # alpha_c over classes in the batch
    else:
        log_importance = (log_uniform - log_prior)[None, :]  # p_u(c) / p_s(c), all C classes
        class_weight = prior
    return _LadeFunction.apply(
        logits, targets, log_prior, log_importance, class_weight, samples_per_class, ce_weight, lader_weight, lam
    )


class _LadeFunction(torch.autograd.Function):
    """LADE-CE and LADER values with a hand-written gradient whose backward needs one new (B, C) buffer.

    Composed from autograd ops (torch.logsumexp over the batch, cross-entropy, accumulating the two gradients) it
    needs about twice the (B, C) buffers and memory passes, which broke the 3x-of-cross-entropy budget at small
    batches (benchmarks/loss_throughput.py). Class statistics are constants. With
    log Q_i = log_softmax_c(z_ic + log p_s(c)) and E_ic = w_ic e^{z_ic - m_c}, S_c = sum_i E_ic (m_c: column max):
      LADE-CE = -mean_i log Q_iy_i                                                         (eq. 19)
      first_c = sum_{i: y_i = c} z_ic / N_c,  second_c = m_c + log S_c - log B                (eq. 11-13)
      LADER   = sum_c alpha_c (-first_c + second_c + lam second_c^2)                         (eq. 15-16)
      dL/dz_ic = ce_weight (Q_ic - [y_i = c]) / B
                 + lader_weight alpha_c ((1 + 2 lam second_c) E_ic / S_c - [y_i = c] / N_c).
    """

    @staticmethod
    def forward(
        ctx, logits, targets, log_prior, log_importance, class_weight, samples_per_class, ce_weight, lader_weight, lam
    ):
        batch_size = logits.shape[0]
        target_logits = logits.gather(1, targets[:, None]).squeeze(1)

        # Column (batch-direction) exponentials, stabilised per class; normalised only inside the gradient.
        column_exp = logits + log_importance
        column_max = column_exp.amax(dim=0)
        column_sum = column_exp.sub_(column_max).exp_().sum(dim=0)
        second = column_max + column_sum.log() - math.log(batch_size)
        inverse_count = samples_per_class.clamp_min(1).to(logits.dtype).reciprocal_()  # 1 / N_c (0 unused if absent)
        first = torch.zeros_like(second).index_add_(0, targets, target_logits).mul_(inverse_count)
        loss = lader_weight * (class_weight * (-first + second + lam * second.square())).sum()

        log_q = None
        if ce_weight != 0:
            shifted = logits + log_prior
            # In place (one (B, C) buffer fewer) where the kernel finishes reading a row before writing it.
            in_place = shifted.device.type == "cpu" and shifted.is_contiguous()
            log_q = torch.log_softmax(shifted, dim=1, out=shifted if in_place else None)
            loss = loss - ce_weight * log_q.gather(1, targets[:, None]).mean()

        ctx.save_for_backward(targets, class_weight, inverse_count, column_exp, column_sum, log_q, second)
        ctx.ce_weight, ctx.lader_weight, ctx.lam = ce_weight, lader_weight, lam
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        targets, class_weight, inverse_count, column_exp, column_sum, log_q, second = ctx.saved_tensors
        lader_class = grad_loss * ctx.lader_weight * class_weight
        column_scale = lader_class * (1.0 + 2.0 * ctx.lam * second) / column_sum
        target_grad = -(lader_class * inverse_count)[targets]
        if log_q is None:
            grad_logits = column_exp * column_scale
        else:
            ce_scale = grad_loss * (ctx.ce_weight / targets.numel())
            grad_logits = log_q.exp().mul_(ce_scale).addcmul_(column_exp, column_scale)
            target_grad = target_grad - ce_scale
        grad_logits.scatter_add_(1, targets[:, None], target_grad[:, None])
        return grad_logits, None, None, None, None, None, None, None, None


def lade_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: ArrayLike,
    alpha: float = 0.1,
    lam: float = 0.1,
    importance: str = "label",
) -> torch.Tensor:
    """`L_LADE = L_ce(z + log p_s) + alpha * L_LADER`, a batch-level scalar (METHODS §4; seed 003 eq. 20)."""
    fn = "lade_loss"
    _check_importance(importance, fn)
    targets = check_logits_targets(logits, targets, fn)
    prior = check_prior(prior, logits.shape[1], fn, logits)
    return _lade(logits, targets, prior, prior.log(), 1.0, alpha, lam, importance)


def adjust_logits(logits: torch.Tensor, source_prior: ArrayLike, target_prior: ArrayLike | None = None) -> torch.Tensor:
    """Post-compensation `z_c - log p_s(c) + log p_t(c)`, p_t uniform when None (METHODS §3; seed 003 eq. 4-7, 17).

    Works on any (..., C) tensor. `target_prior` may contain zeros: those classes get logit -inf (probability 0).
    """
    fn = "adjust_logits"
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or not logits.is_floating_point():
        raise ValueError(f"{fn}: `logits` must be a floating tensor of shape (..., C).")
    num_classes = logits.shape[-1]
    source = check_prior(source_prior, num_classes, fn, logits, name="source_prior")
    if target_prior is None:
        log_target = -math.log(num_classes)
    else:
        log_target = check_prior(target_prior, num_classes, fn, logits, name="target_prior", allow_zeros=True).log()
    return logits - source.log() + log_target


def pc_softmax(logits: torch.Tensor, source_prior: ArrayLike, target_prior: ArrayLike | None = None) -> torch.Tensor:
    """PC Softmax: softmax of `adjust_logits` over the last dimension (METHODS §3; seed 003 eq. 7)."""
    return adjust_logits(logits, source_prior, target_prior).softmax(dim=-1)
