"""Equalization loss v2 (Tan et al., "Equalization Loss v2: A New Gradient Balance Approach for Long-tailed Object
Detection", CVPR 2021, arXiv:2012.08548).

A sigmoid (one-vs-all) classifier over C foreground classes and the background, whose per-class positive and negative
weights follow the accumulated ratio of positive to negative gradient magnitudes of that class: a class whose
positives have been outweighed by negatives gets its negative gradients damped and its positive ones raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..utils import torch_compat
from ._validation import check_logits_targets

# Added to the negative magnitude in the ratio pos / neg, as in the paper's public code (a class never seen as a
# negative keeps a finite ratio).
RATIO_EPS = 1e-10


@dataclass(frozen=True)
class EQLv2Defaults:
    """Paper defaults of EQLv2 (Tan et al., "Equalization Loss v2", CVPR 2021, arXiv:2012.08548): the mapping
    f(r) = 1 / (1 + exp(-gamma (r - mu))) with gamma 12 and mu 0.8, and the positive-weight scale alpha 4
    (q_j = 1 + alpha (1 - f(r_j))).

    Attributes:
        gamma: steepness of the mapping f.
        mu: centre of the mapping f.
        alpha: scale of the positive weight q_j.
    """

    gamma: float = 12.0
    mu: float = 0.8
    alpha: float = 4.0


EQLV2_DEFAULTS = EQLv2Defaults()


class EQLv2Loss(nn.Module):
    """EQLv2: gradient-ratio-weighted sigmoid BCE over C + 1 columns (Tan et al. 2021: g_j, f, q_j, r_j).

    For foreground class j with accumulated magnitudes pos_grad_j, neg_grad_j and ratio
    r_j = pos_grad_j / (neg_grad_j + 1e-10), the negative weight is f(r_j) = 1 / (1 + exp(-gamma (r_j - mu))) and the
    positive weight 1 + alpha (1 - f(r_j)); the background column has weight 1 on both sides, and before the first
    batch with samples every weight is 1. The loss is sum_{n, j} w_nj BCE(z_nj, t_nj) / N with one-hot targets t.
    After the loss (weights from the statistics before the batch) the batch's weighted gradient magnitudes
    |sigmoid(z_nj) - t_nj| w_nj are added: to pos_grad_j over entries with t = 1, to neg_grad_j over t = 0
    (foreground columns only).

    State (buffers, saved in `state_dict` so that a resumed run continues exactly): `pos_grad`, `neg_grad` (float64,
    length C: over a long schedule the sums reach 1e6 and more, where float32 would drop increments below ~0.1, and
    float64 makes CPU runs reproduce to the last bit; they are C numbers, so the cost is nil) and `num_batches`
    (int64, batches that contributed at least one sample, over all processes). Keep the module out of `.half()` /
    `.to(dtype)` casts of the model: those would cast the statistics too.

    Statistics are updated only in training mode (`module.train()`, the default) and not under torch.func transforms
    (the virtual steps of the meta-weighting engine are not batches seen).

    Args:
        num_classes: C, the number of foreground classes (the logits have C + 1 columns, background last).
        gamma: steepness of the mapping f (> 0).
        mu: centre of the mapping f.
        alpha: scale of the positive weight (>= 0).
        reduce: sums a tensor over processes and returns the sum (e.g. an all-reduce); applied to each batch's
            increments so that every process holds the global statistics. None: `torch.distributed.all_reduce` when a
            process group with more than one process is initialised, else nothing.
    """

    pos_grad: torch.Tensor
    neg_grad: torch.Tensor
    num_batches: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        gamma: float = EQLV2_DEFAULTS.gamma,
        mu: float = EQLV2_DEFAULTS.mu,
        alpha: float = EQLV2_DEFAULTS.alpha,
        reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        super().__init__()
        fn = "EQLv2Loss"
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"{fn}: `num_classes` must be an int >= 1, the number of foreground classes C (the logits have C + 1 "
                f"columns); got {num_classes!r}."
            )
        if not math.isfinite(gamma) or gamma <= 0:
            raise ValueError(f"{fn}: `gamma` must be finite and > 0 (steepness of the weight mapping); got {gamma}.")
        if not math.isfinite(mu):
            raise ValueError(f"{fn}: `mu` must be finite; got {mu}.")
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"{fn}: `alpha` must be finite and >= 0; got {alpha}.")
        if reduce is not None and not callable(reduce):
            raise ValueError(
                f"{fn}: `reduce` must be a callable that sums a tensor over processes and returns it, or None; got "
                f"{type(reduce).__name__}."
            )
        self.num_classes = num_classes
        self.gamma = float(gamma)
        self.mu = float(mu)
        self.alpha = float(alpha)
        self.reduce = reduce
        self.register_buffer("pos_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))
        self._constants_cache: Dict[tuple, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, gamma={self.gamma}, mu={self.mu}, alpha={self.alpha}"

    def weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The weights the next batch gets from the current statistics.

        Returns:
            (positive, negative) weights, float64 of length C + 1 (background last, weight 1): all 1 before the first
            batch with samples.
        """
        positive, negative = self._weight_table()
        return positive, negative

    def _weight_table(self) -> torch.Tensor:
        """[positive; negative] weights as one (2, C + 1) float64 tensor, in seven ops (each small op is a visible share
        of a small batch's loss)."""
        offset, base, slope = self._constants(self.pos_grad.device)
        # gamma (r - mu) = gamma pos / (neg + 1e-10) - gamma mu; f(r) = sigmoid of it, 1 before the first batch
        argument = torch.addcdiv(offset, self.pos_grad, self.neg_grad + RATIO_EPS, value=self.gamma)
        negative = torch.where(self.num_batches > 0, argument.sigmoid_(), 1.0)
        table = torch.addcmul(base, slope, negative)  # rows 1 + alpha (1 - f) = (1 + alpha) - alpha f, and f
        return F.pad(table, (0, 1), value=1.0)  # the background column

    def _constants(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-gamma mu, [[1 + alpha], [0]] and [[-alpha], [1]] as float64 tensors on `device`, made once per device and
        hyperparameters, by fills (no copy from the host)."""
        key = (device, self.gamma, self.mu, self.alpha)
        constants = self._constants_cache.get(key)
        if constants is None:
            offset = torch.full((), -self.gamma * self.mu, dtype=torch.float64, device=device)
            base = torch.zeros(2, 1, dtype=torch.float64, device=device)
            base[0].fill_(1.0 + self.alpha)
            slope = torch.ones(2, 1, dtype=torch.float64, device=device)
            slope[0].fill_(-self.alpha)
            constants = (offset, base, slope)
            self._constants_cache[key] = constants
        return constants

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of one batch; in training mode the statistics are updated afterwards.

        Args:
            logits: (N, C + 1) logits, background last.
            targets: (N,) integer labels in [0, C], C the background.

        Returns:
            The scalar loss sum_{n, j} w_nj BCE(z_nj, t_nj) / N (0, connected to the graph, for N = 0); float32 for
            float16/bfloat16 logits.
        """
        fn = "EQLv2Loss.forward"
        targets = check_logits_targets(logits, targets, fn)
        if logits.shape[1] != self.num_classes + 1:
            raise ValueError(
                f"{fn}: `logits` must have C + 1 = {self.num_classes + 1} columns (C = {self.num_classes} foreground "
                f"classes, background last); got {tuple(logits.shape)}. Fix: build EQLv2Loss(num_classes="
                f"{logits.shape[1] - 1}) for these logits, or add the background column."
            )
        if logits.device != self.pos_grad.device:
            raise ValueError(
                f"{fn}: `logits` are on {logits.device} but the statistics on {self.pos_grad.device}. "
                "Fix: move the loss with the model, e.g. loss.to(logits.device)."
            )
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        batch_size = logits.shape[0]
        if torch_compat.functorch_transforms_active():
            # torch.func (the meta-weighting engine differentiates losses twice): plain autograd ops, no update.
            positive, negative = (w.to(logits.dtype) for w in self.weights())
            one_hot = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
            weight = positive * one_hot + negative * (1.0 - one_hot)
            loss = F.binary_cross_entropy_with_logits(logits, one_hot, weight=weight, reduction="sum")
            return loss / max(batch_size, 1)
        positive, negative = self._weight_table().to(logits.dtype)
        if batch_size == 0:
            loss = logits.sum()
            positive_sum = negative_sum = logits.new_zeros(self.num_classes + 1)
        else:
            loss, positive_sum, negative_sum = _EQLv2Function.apply(logits, targets, positive, negative)
        if self.training:
            self._update(positive_sum, negative_sum, batch_size)
        return loss

    @torch.no_grad()
    def _update(self, positive_sum: torch.Tensor, negative_sum: torch.Tensor, batch_size: int) -> None:
        """Add a batch's weighted gradient magnitudes (length C + 1; the background is dropped), summed over
        processes. Called on every process for every batch, empty ones included, so that the collectives match."""
        num_classes = self.num_classes
        if self.reduce is None and not _distributed():
            self.pos_grad += positive_sum[:num_classes]  # float32 increments, float64 sums
            self.neg_grad += negative_sum[:num_classes]
            if batch_size > 0:
                self.num_batches += 1
            return
        # One reduction of [pos (C), neg (C), batch size]: whether any process had samples is known only after it.
        count = positive_sum.new_full((1,), float(batch_size))
        increments = torch.cat([positive_sum[:num_classes], negative_sum[:num_classes], count]).double()
        increments = self.reduce(increments) if self.reduce is not None else _all_reduce(increments)
        self.pos_grad += increments[:num_classes]
        self.neg_grad += increments[num_classes : 2 * num_classes]
        self.num_batches += (increments[2 * num_classes] > 0).long()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor)
    return tensor


class _EQLv2Function(torch.autograd.Function):
    """Weighted sigmoid BCE with a hand-written gradient, plus the per-column weighted gradient magnitudes.

    With s = sigmoid(z) and BCE(z, 0) = softplus(z), BCE(z, 1) = softplus(-z):
      L = (sum_j neg_j sum_{n: y_n != j} softplus(z_nj) + sum_n pos_{y_n} softplus(-z_ny)) / N,
      dL/dz_nj = (g / N) w_nj (s_nj - t_nj),
    so no (N, C + 1) one-hot or weight tensor is built. Over the (N, C + 1) entries softplus(z) = relu(z) - log x with
    x = max(s, 1 - s) in [1/2, 1]: one sigmoid pass and no elementwise log, because the column sums of log x are taken
    as logs of products of 64 rows (>= 2^-64, far from float32 underflow; the rounding is that of summing 64 logs).
    torch's softplus costs about 1.5 cross-entropies on CPU, a log pass about half of one; the N target terms use
    softplus itself. The magnitudes |s - t| w summed per column are pos_j sum_{n: y_n = j} (1 - s_nj) and
    neg_j sum_{n: y_n != j} s_nj. The target entries are set to neutral values (0, or 1 inside the products) before
    the column reductions, not subtracted from full sums, which would cancel catastrophically.
    """

    @staticmethod
    def forward(ctx, logits, targets, positive, negative):
        batch_size, num_columns = logits.shape
        index = targets[:, None]
        probs = torch.sigmoid(logits)
        target_probs = probs.gather(1, index).squeeze(1)
        probs.scatter_(1, index, 0.0)  # s_nj where t = 0: the negatives' magnitudes and gradients (before weights)
        larger = torch.rsub(probs, 1.0)
        torch.maximum(larger, probs, out=larger).scatter_(1, index, 1.0)  # x = max(s, 1 - s); 1 (log 0) at targets
        log_sums = _column_log_sums(larger)  # -sum_{n: y_n != j} softplus(-|z_nj|)
        torch.clamp_min(logits, 0.0, out=larger).scatter_(1, index, 0.0)  # the buffer again, for relu(z)
        negative_bce = larger.sum(dim=0).sub_(log_sums)  # sum_{n: y_n != j} softplus(z_nj)
        target_positive = positive.index_select(0, targets)
        target_bce = F.softplus(logits.gather(1, index).squeeze(1).neg_())  # BCE(z_ny, 1), N values
        loss = torch.dot(negative_bce, negative).add_(torch.dot(target_positive, target_bce)).div_(batch_size)
        negative_sum = probs.sum(dim=0).mul_(negative)
        one_minus = torch.rsub(target_probs, 1.0)  # |s - 1| of the targets
        positive_sum = logits.new_zeros(num_columns).index_add_(0, targets, one_minus).mul_(positive)
        ctx.save_for_backward(probs, targets, one_minus.mul_(target_positive), negative)
        ctx.mark_non_differentiable(positive_sum, negative_sum)
        return loss, positive_sum, negative_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_positive, _grad_negative):
        probs, targets, target_magnitude, negative = ctx.saved_tensors
        scale = grad_loss / probs.shape[0]
        grad = probs * (negative * scale)  # the target entries are 0 in probs
        grad.scatter_(1, targets[:, None], (target_magnitude * -scale)[:, None])  # pos_y (s_y - 1) g / N
        return grad, None, None, None


# Rows multiplied before one log: x >= 1/2 keeps a product of 64 above 5e-20 (float32's smallest normal is 1e-38).
_ROWS_PER_PRODUCT = 64


def _column_log_sums(values: torch.Tensor) -> torch.Tensor:
    """sum_n log values_nj for a contiguous (N, C) tensor of values in [1/2, 1], as logs of products of 64 rows."""
    rows, columns = values.shape
    whole = rows // _ROWS_PER_PRODUCT * _ROWS_PER_PRODUCT
    total = None
    if whole:
        grouped = values[:whole].view(whole // _ROWS_PER_PRODUCT, _ROWS_PER_PRODUCT, columns)
        total = grouped.prod(dim=1).log_().sum(dim=0)
    if whole < rows:
        rest = values[whole:].prod(dim=0).log_()
        total = rest if total is None else total.add_(rest)
    return total
