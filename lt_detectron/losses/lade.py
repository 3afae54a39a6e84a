"""Balanced softmax (LADE-CE), LADER, LADE and PC Softmax (Hong et al., CVPR 2021, arXiv:2012.00321).

Balanced softmax is also Ren et al., NeurIPS 2020, arXiv:2007.10740."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import (
    ArrayLike,
    check_class_weight,
    check_logits_targets,
    check_prior,
    check_reduction,
    class_histogram,
    log_of,
    on_host,
    reduce_loss,
)
from .shifted_cross_entropy import shifted_cross_entropy

IMPORTANCE_KINDS = ("label", "column")


@dataclass(frozen=True)
class LADEDefaults:
    """Paper defaults of LADE (Hong et al., "Disentangling Label Distribution for Long-tailed Visual Recognition",
    CVPR 2021, arXiv:2012.00321): alpha 0.1 (CIFAR-100-LT public configs), lambda 0.1 (Eq. 15), importance weights
    by the sample's own label (Eq. 13; "column" is the authors' public code).

    Attributes:
        alpha: weight of L_LADER in `lade_loss`.
        lam: lambda, the weight of LADER's squared term (eq. 15).
        importance: "label" or "column", the importance weighting of `lader`.
    """

    alpha: float = 0.1
    lam: float = 0.1
    importance: str = "label"


LADE_DEFAULTS = LADEDefaults()


def balanced_softmax_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """LADE-CE / balanced softmax `CE(z + log p_s, y)` (Hong et al. 2021 eq. 18-19; Ren et al. 2020).

    Args:
        logits: (B, C) logits.
        targets: (B,) integer class indices in [0, C).
        prior: length-C source prior p_s(c) (> 0, sums to 1), e.g. `prior_from_counts(counts)`.
        weight: optional length-C class weights w_c (>= 0): example i's loss is multiplied by w_{y_i}. None =
            unweighted.
        reduction: "mean" (sum over the batch divided by B, 0 for an empty batch), "sum" or "none".

    Returns:
        The scalar loss, or the (B,) per-example losses for reduction="none".
    """
    fn = "balanced_softmax_loss"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    prior = check_prior(prior, logits.shape[1], fn, logits)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    if weight is None:
        return shifted_cross_entropy(logits, targets, column_shift=log_of(prior), reduction=reduction)
    per_example = shifted_cross_entropy(logits, targets, column_shift=log_of(prior)) * weight[targets]
    return reduce_loss(per_example, reduction)


def lader(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: ArrayLike,
    lam: float = LADE_DEFAULTS.lam,
    importance: str = LADE_DEFAULTS.importance,
) -> torch.Tensor:
    """LADER regulariser, a batch-level scalar (Hong et al. 2021 eq. 11-16, alpha_c = p_s(c)).

    importance="label": eq. 13, sample i weighted by p_u(y_i)/p_s(y_i), summed over classes present in the batch.
    importance="column": the authors' public code, exp(z_i[c]) weighted by p_u(c)/p_s(c), summed over all C.
    An empty batch gives 0.

    Args:
        logits: (B, C) logits.
        targets: (B,) integer class indices in [0, C).
        prior: length-C source prior p_s(c) (> 0, sums to 1); also the class weights alpha_c.
        lam: lambda, the weight of the squared term (eq. 15).
        importance: "label" or "column", as above.

    Returns:
        The scalar regulariser.
    """
    fn = "lader"
    _check_importance(importance, fn)
    targets = check_logits_targets(logits, targets, fn)
    prior = check_prior(prior, logits.shape[1], fn, logits)
    return _lade(logits, targets, prior, log_of(prior), 0.0, 1.0, lam, importance)


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
    samples_per_class = class_histogram(targets, num_classes)
    if importance == "label":
        log_importance = (log_uniform - log_prior[targets])[:, None]  # p_u(y_i) / p_s(y_i), eq. 13
        class_weight = torch.where(samples_per_class > 0, prior, 0.0)  # alpha_c over classes in the batch
    else:
        log_importance = (log_uniform - log_prior)[None, :]  # p_u(c) / p_s(c), all C classes
        class_weight = prior
    return _LadeFunction.apply(
        logits, targets, prior, log_prior, log_importance, class_weight, samples_per_class, ce_weight, lader_weight, lam
    )


class _LadeFunction(torch.autograd.Function):
    """LADE-CE and LADER values with a hand-written gradient (class statistics are constants).

    With log Q_i = log_softmax_c(z_ic + log p_s(c)) and E_ic = w_ic e^{z_ic}, S_c = sum_i E_ic (w: the importance):
      LADE-CE = -mean_i log Q_iy_i                                                         (eq. 19)
      first_c = sum_{i: y_i = c} z_ic / N_c,  second_c = log S_c - log B                      (eq. 11-13)
      LADER   = sum_c alpha_c (-first_c + second_c + lam second_c^2)                         (eq. 15-16)
              = sum_c alpha_c (second_c + lam second_c^2) - sum_i (alpha_y / N_y)_i z_iy_i
      dL/dz_ic = ce_weight (Q_ic - [y_i = c]) / B
                 + lader_weight alpha_c ((1 + 2 lam second_c) E_ic / S_c - [y_i = c] / N_c).
    Fast path: one softmax X_ic = e^{z_ic - r_i} (r_i: the row's log-sum-exp) serves both softmaxes, because
      Q_ic = X_ic p_c / (X p)_i   and   E_ic / S_c = X_ic v_i / (v^T X)_c,   v_i = w_i e^{r_i - K}
    (row importance; a column importance w_c cancels in E/S and enters second_c as log w_c), so the gradient is
    X * (a b^T + v d^T) minus the target terms: two outer products and no second exp. Cross-entropy makes two exp
    passes, the exact path three. The fast path needs the two matrix-vector sums to stay far from float32
    underflow (>= 1e-30); when a row's or a column's mass is below that (logits spread over more than ~60) the exact
    path runs: column-max-stabilised E and a log-softmax for Q. Deciding needs the masses on the host, so only the
    CPU takes the fast path; on an accelerator that read-back would stall every call, and the exact path runs.
    """

    @staticmethod
    def forward(
        ctx,
        logits,
        targets,
        prior,
        log_prior,
        log_importance,
        class_weight,
        samples_per_class,
        ce_weight,
        lader_weight,
        lam,
    ):
        batch_size = logits.shape[0]
        target_logits = logits.gather(1, targets[:, None]).squeeze(1)
        # alpha_{y_i} / N_{y_i}: the first term's weight per sample, and its gradient on the target logit.
        sample_weight = (class_weight / samples_per_class.clamp_min(1))[targets]
        ctx.ce_weight, ctx.lader_weight, ctx.lam = ce_weight, lader_weight, lam
        per_row = log_importance.shape[1] == 1
        fast = _lade_fast_statistics(logits, prior, log_importance, per_row) if on_host(logits) else None
        if fast is not None:
            row_lse, row_exp, prior_mass, importance_weights, column_mass, second = fast
            ctx.fast = True
            ce_value = 0.0
            if ce_weight != 0:
                # -log Q_iy = r_i + log (X p)_i - z_iy - log p_s(y_i)
                ce_value = (prior_mass.log() + row_lse).sub_(target_logits + log_prior[targets]).mean()
            ctx.save_for_backward(
                targets,
                class_weight,
                sample_weight,
                row_exp,
                prior_mass,
                importance_weights,
                column_mass,
                second,
                prior,
            )
        else:
            ctx.fast = False
            column_exp = logits + log_importance
            column_max = column_exp.amax(dim=0)
            column_sum = column_exp.sub_(column_max).exp_().sum(dim=0)
            second = column_max + column_sum.log() - math.log(batch_size)
            log_q = None
            ce_value = 0.0
            if ce_weight != 0:
                shifted = logits + log_prior
                # In place (one (B, C) buffer fewer) where the kernel finishes reading a row before writing it.
                in_place = shifted.device.type == "cpu" and shifted.is_contiguous()
                log_q = torch.log_softmax(shifted, dim=1, out=shifted if in_place else None)
                ce_value = -log_q.gather(1, targets[:, None]).mean()
            ctx.save_for_backward(targets, class_weight, sample_weight, column_exp, column_sum, log_q, second)
        class_term = torch.dot(class_weight, second + lam * second.square())
        loss = lader_weight * (class_term - torch.dot(sample_weight, target_logits))
        return loss + ce_weight * ce_value if ce_weight != 0 else loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        if ctx.fast:
            targets, class_weight, sample_weight, row_exp, prior_mass, weights, column_mass, second, prior = (
                ctx.saved_tensors
            )
        else:
            targets, class_weight, sample_weight, column_exp, column_sum, log_q, second = ctx.saved_tensors
        lader_scale = grad_loss * ctx.lader_weight
        column_scale = (1.0 + 2.0 * ctx.lam * second).mul_(class_weight).mul_(lader_scale)
        target_grad = sample_weight * -lader_scale
        ce_scale = grad_loss * (ctx.ce_weight / targets.numel())
        if ctx.ce_weight != 0:
            target_grad = target_grad - ce_scale
        if ctx.fast:
            grad_logits = torch.outer(weights, column_scale / column_mass)
            if ctx.ce_weight != 0:
                grad_logits.addr_(ce_scale / prior_mass, prior)
            grad_logits.mul_(row_exp)
        elif log_q is None:
            grad_logits = column_exp * (column_scale / column_sum)
        else:
            grad_logits = log_q.exp().mul_(ce_scale).addcmul_(column_exp, column_scale / column_sum)
        grad_logits.scatter_add_(1, targets[:, None], target_grad[:, None])
        return grad_logits, None, None, None, None, None, None, None, None, None


# Row and column masses below this switch LADE to its exact path (float32 keeps full precision down to ~1e-38).
_FAST_PATH_MIN_MASS = 1e-30


def _lade_fast_statistics(logits, prior, log_importance, per_row: bool):
    """(r, X, X p, v, v^T X, second) of `_LadeFunction`'s fast path, or None where its sums would underflow."""
    # softmax's fused kernel rather than exp(z - row max): its exp is vectorised faster than torch.exp on
    # CPU (timing in benchmarks/results/loss_throughput.md).
    row_exp = torch.softmax(logits, dim=1)
    # r_i = z_ij - log X_ij at the row's largest entry j, where X_ij >= 1/C cannot underflow.
    row_lse = logits.amax(dim=1) - row_exp.amax(dim=1).log_()
    prior_mass = row_exp @ prior  # (X p)_i = sum_c e^{z_ic - r_i} p_c
    log_row_weight = row_lse + (log_importance.squeeze(1) if per_row else 0.0)
    top = log_row_weight.max()
    importance_weights = (log_row_weight - top).exp_()  # v_i
    column_mass = importance_weights @ row_exp  # (v^T X)_c
    smallest = torch.minimum(prior_mass.min(), column_mass.min())
    if float(smallest) < _FAST_PATH_MIN_MASS:
        return None
    second = column_mass.log() + top - math.log(logits.shape[0])
    if not per_row:
        second = second + log_importance.squeeze(0)
    return row_lse, row_exp, prior_mass, importance_weights, column_mass, second


def lade_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: ArrayLike,
    alpha: float = LADE_DEFAULTS.alpha,
    lam: float = LADE_DEFAULTS.lam,
    importance: str = LADE_DEFAULTS.importance,
) -> torch.Tensor:
    """`L_LADE = L_ce(z + log p_s) + alpha * L_LADER`, a batch-level scalar (Hong et al. 2021 eq. 20).

    Args:
        logits: (B, C) logits.
        targets: (B,) integer class indices in [0, C).
        prior: length-C source prior p_s(c) (> 0, sums to 1).
        alpha: weight of L_LADER.
        lam: lambda of `lader` (eq. 15).
        importance: "label" or "column", see `lader`.

    Returns:
        The scalar loss, L_ce being the batch mean (0 for an empty batch).
    """
    fn = "lade_loss"
    _check_importance(importance, fn)
    targets = check_logits_targets(logits, targets, fn)
    prior = check_prior(prior, logits.shape[1], fn, logits)
    return _lade(logits, targets, prior, log_of(prior), 1.0, alpha, lam, importance)


def adjust_logits(logits: torch.Tensor, source_prior: ArrayLike, target_prior: ArrayLike | None = None) -> torch.Tensor:
    """Post-compensation `z_c - log p_s(c) + log p_t(c)`, p_t uniform when None (Hong et al. 2021 eq. 4-7, 17).

    Works on any (..., C) tensor. `target_prior` may contain zeros: those classes get logit -inf (probability 0).

    Args:
        logits: (..., C) logits.
        source_prior: length-C training prior p_s(c) (> 0, sums to 1).
        target_prior: length-C test prior p_t(c) (>= 0, sums to 1); None = uniform, 1/C.

    Returns:
        Adjusted logits of the logits' shape; float32 for float16/bfloat16 logits.
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
    """PC Softmax: softmax of `adjust_logits` over the last dimension (Hong et al. 2021 eq. 7).

    Args:
        logits: (..., C) logits.
        source_prior: length-C training prior p_s(c) (> 0, sums to 1).
        target_prior: length-C test prior p_t(c) (>= 0, sums to 1); None = uniform.

    Returns:
        Probabilities of the logits' shape, summing to 1 over the last dimension.
    """
    return adjust_logits(logits, source_prior, target_prior).softmax(dim=-1)
