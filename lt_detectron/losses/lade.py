"""Label-distribution disentangling: balanced softmax (LADE-CE), LADER, LADE and PC Softmax (METHODS §3-4, seed 003)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
    return reduce_loss(_balanced_softmax(logits, targets, prior.log(), weight), reduction)


def _balanced_softmax(
    logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    return F.cross_entropy(logits + log_prior, targets, weight=weight, reduction="none")


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
    return _lader(logits, targets, prior, prior.log(), lam, importance)


def _check_importance(importance: str, fn: str) -> None:
    if importance not in IMPORTANCE_KINDS:
        raise ValueError(f"{fn}: importance must be one of {IMPORTANCE_KINDS}; got {importance!r}.")


def _lader(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: torch.Tensor,
    log_prior: torch.Tensor,
    lam: float,
    importance: str,
) -> torch.Tensor:
    batch_size, num_classes = logits.shape
    if batch_size == 0:
        return logits.sum()
    log_uniform = -math.log(num_classes)
    samples_per_class = torch.bincount(targets, minlength=num_classes)
    if importance == "label":
        log_importance = (log_uniform - log_prior[targets])[:, None]  # p_u(y_i) / p_s(y_i), eq. 13
        class_weight = torch.where(samples_per_class > 0, prior, 0.0)  # alpha_c over classes in the batch
    else:
        log_importance = (log_uniform - log_prior)[None, :]  # p_u(c) / p_s(c), all C classes
        class_weight = prior
    loss, _, _ = _LaderFunction.apply(logits, targets, log_importance, class_weight, samples_per_class, lam)
    return loss


class _LaderFunction(torch.autograd.Function):
    """LADER value and its hand-written gradient, one (B, C) pass each way.

    `torch.logsumexp` over the batch plus autograd costs about 3x a cross-entropy at detection scale; here the
    batch-softmax P is computed in place once and reused by the backward. `log_importance` is (B, 1) or (1, C);
    the class statistics are constants. Per class c (eq. 11-16, alpha_c = class_weight_c):
      first_c  = sum_{i: y_i = c} z_ic / N_c,   second_c = logsumexp_i(z_ic + log w_ic) - log B,
      L = sum_c alpha_c (-first_c + second_c + lam second_c^2),
      dL/dz_ic = alpha_c ((1 + 2 lam second_c) P_ic - [y_i = c] / N_c),  P_ic = softmax_i(z_ic + log w_ic).
    """

    @staticmethod
    def forward(logits, targets, log_importance, class_weight, samples_per_class, lam):
        batch_softmax = logits + log_importance
        column_max = batch_softmax.amax(dim=0)
        column_sum = batch_softmax.sub_(column_max).exp_().sum(dim=0)
        batch_softmax.div_(column_sum)
        second = column_max + column_sum.log() - math.log(logits.shape[0])
        target_logits = logits.gather(1, targets[:, None]).squeeze(1)
        first = torch.zeros_like(second).index_add_(0, targets, target_logits) / samples_per_class.clamp_min(1)
        loss = (class_weight * (-first + second + lam * second.square())).sum()
        return loss, batch_softmax, second

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, targets, _, class_weight, samples_per_class, lam = inputs
        _, batch_softmax, second = output
        ctx.mark_non_differentiable(batch_softmax, second)
        ctx.save_for_backward(targets, class_weight, samples_per_class, batch_softmax, second)
        ctx.lam = lam

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_softmax, _grad_second):
        targets, class_weight, samples_per_class, batch_softmax, second = ctx.saved_tensors
        weighted = grad_loss * class_weight
        grad_logits = batch_softmax * (weighted * (1.0 + 2.0 * ctx.lam * second))
        first_grad = weighted / samples_per_class.clamp_min(1)
        grad_logits.scatter_add_(1, targets[:, None], -first_grad[targets][:, None])
        return grad_logits, None, None, None, None, None


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
    log_prior = prior.log()
    balanced = reduce_loss(_balanced_softmax(logits, targets, log_prior), "mean")
    return balanced + alpha * _lader(logits, targets, prior, log_prior, lam, importance)


def adjust_logits(
    logits: torch.Tensor, source_prior: ArrayLike, target_prior: ArrayLike | None = None
) -> torch.Tensor:
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
