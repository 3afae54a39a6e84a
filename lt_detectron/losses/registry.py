"""`build_loss(name, counts, **kwargs)`: one registry from a config string to a classification loss module.

Detection box heads and the classification trainer select losses through it, so both use the same functions.
Class statistics are non-persistent buffers: they move with `.to(device)` but are rebuilt from the dataset,
never loaded from a checkpoint that may come from another dataset.
"""

from __future__ import annotations

import inspect
from typing import Callable, Type

import torch
import torch.nn.functional as F
from torch import nn

from lt_detectron.registry import Registry

from ._validation import ArrayLike, check_counts, check_logits_targets, check_reduction, reduce_loss
from .class_weights import class_weights, prior_from_counts
from .lade import LADE_DEFAULTS, balanced_softmax_loss, lade_loss
from .ldam import LDAM_DEFAULTS, DeferredReweighting, ldam_loss, ldam_margins
from .reweighted import FOCAL_DEFAULTS, cb_cross_entropy, focal_loss

# fvcore's Registry (no Detectron2 import): `@LOSS_REGISTRY.register("name")` adds a loss.
LOSS_REGISTRY = Registry("LT_LOSS")


def register_loss(name: str) -> Callable[[Type["LTLoss"]], Type["LTLoss"]]:
    """`@register_loss("name")`, the same as `@LOSS_REGISTRY.register("name")`.

    Args:
        name: the name `build_loss` (and the configs) select the loss by.

    Returns:
        A class decorator that registers an `LTLoss` subclass and returns it.
    """
    return LOSS_REGISTRY.register(name)


class LTLoss(nn.Module):
    """A loss over K-way logits: `forward(logits, targets, reduction="mean")`.

    `per_example` is True when reduction="none" gives meaningful per-sample losses (False for batch-level losses).
    `needs_counts` is True when the constructor needs the per-class training counts (`build_loss` checks it).
    """

    per_example: bool = True
    needs_counts: bool = False

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The loss of one batch.

        Args:
            logits: (B, K) logits.
            targets: (B,) integer class indices in [0, K).
            reduction: "mean" (sum over the batch divided by B), "sum" or "none"; batch-level losses
                (`per_example` False) accept "mean" only.

        Returns:
            The scalar loss, or the (B,) per-example losses for reduction="none".
        """
        raise NotImplementedError

    def _require_per_example(self, reduction: str) -> None:
        if reduction != "mean" and not self.per_example:
            raise ValueError(
                f"{type(self).__name__} is a batch-level loss: only reduction='mean' is defined; got {reduction!r}."
            )


@LOSS_REGISTRY.register("ce")
class CrossEntropyLoss(LTLoss):
    """Plain softmax cross-entropy (the baseline).

    Args:
        counts: ignored (accepted so that every loss is built alike).
    """

    def __init__(self, counts: ArrayLike | None = None) -> None:
        super().__init__()

    def forward(self, logits, targets, reduction="mean"):
        check_reduction(reduction, "ce")
        targets = check_logits_targets(logits, targets, "ce")
        return reduce_loss(F.cross_entropy(logits, targets, reduction="none"), reduction)


@LOSS_REGISTRY.register("cb")
class ClassBalancedCELoss(LTLoss):
    """Effective-number weighted cross-entropy (Cui et al., CVPR 2019, arXiv:1901.05555).

    Args:
        counts: length-K training counts n_c.
        beta: effective-number beta; None = (N - 1) / N (`class_weights`).
        zero_policy: `class_weights`' policy for classes with n_c = 0 ("error", "exclude" or "warn").
    """

    needs_counts = True

    def __init__(self, counts: ArrayLike, beta: float | None = None, zero_policy: str = "error") -> None:
        super().__init__()
        self.register_buffer("weight", class_weights(counts, beta=beta, zero_policy=zero_policy), persistent=False)

    def forward(self, logits, targets, reduction="mean"):
        return cb_cross_entropy(logits, targets, self.weight, reduction)


@LOSS_REGISTRY.register("focal")
class FocalLoss(LTLoss):
    """Focal loss, softmax or sigmoid form (Lin et al., ICCV 2017, arXiv:1708.02002).

    Args:
        counts: ignored.
        gamma: focusing parameter (>= 0).
        form: "softmax" or "sigmoid" (`focal_loss`).
    """

    def __init__(
        self, counts: ArrayLike | None = None, gamma: float = FOCAL_DEFAULTS.gamma, form: str = FOCAL_DEFAULTS.form
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.form = form
        self.register_buffer("weight", None, persistent=False)

    def forward(self, logits, targets, reduction="mean"):
        return focal_loss(logits, targets, self.gamma, self.weight, self.form, reduction)


@LOSS_REGISTRY.register("cb_focal")
class ClassBalancedFocalLoss(FocalLoss):
    """Focal loss times effective-number class weights (Cui et al. 2019).

    Args:
        counts: length-K training counts n_c.
        gamma: focusing parameter (>= 0).
        form: "softmax" or "sigmoid" (`focal_loss`).
        beta: effective-number beta; None = (N - 1) / N (`class_weights`).
        zero_policy: `class_weights`' policy for classes with n_c = 0 ("error", "exclude" or "warn").
    """

    needs_counts = True

    def __init__(
        self,
        counts: ArrayLike,
        gamma: float = FOCAL_DEFAULTS.gamma,
        form: str = FOCAL_DEFAULTS.form,
        beta: float | None = None,
        zero_policy: str = "error",
    ) -> None:
        super().__init__(gamma=gamma, form=form)
        self.weight = class_weights(counts, beta=beta, zero_policy=zero_policy)


@LOSS_REGISTRY.register("ldam")
class LDAMLoss(LTLoss):
    """LDAM with optional deferred re-weighting: call `set_iteration(it)` each step.

    Cao et al., NeurIPS 2019, arXiv:1906.07413.

    Args:
        counts: length-K training counts n_c (> 0), for the margins and the DRW weights.
        max_margin: the largest margin (`ldam_margins`).
        scale: the logit scale s.
        drw_start: the first re-weighted iteration; < 0 = never.
        drw_beta: effective-number beta of the DRW weights.
    """

    needs_counts = True

    def __init__(
        self,
        counts: ArrayLike,
        max_margin: float = LDAM_DEFAULTS.max_margin,
        scale: float = LDAM_DEFAULTS.scale,
        drw_start: int = -1,
        drw_beta: float = LDAM_DEFAULTS.drw_beta,
    ) -> None:
        super().__init__()
        self.max_margin = max_margin
        self.scale = scale
        counts = check_counts(counts, "build_loss('ldam')")
        self.drw = DeferredReweighting(counts, drw_start, drw_beta)
        self.register_buffer("counts", counts.to(torch.get_default_dtype()), persistent=False)
        # Computed once, also under torch.func (where ldam_loss's own memo of margins from counts is bypassed).
        margins = ldam_margins(counts, max_margin).to(torch.get_default_dtype())
        self.register_buffer("margins", margins, persistent=False)
        self.register_buffer("weight", None, persistent=False)

    def set_iteration(self, iteration: int) -> None:
        """Switch the DRW class weights on once `iteration >= drw_start` (never when drw_start < 0).

        Args:
            iteration: the current training iteration.
        """
        weight = self.drw.weights(iteration)
        self.weight = None if weight is None else weight.to(self.counts.device)

    @property
    def drw_start(self) -> int:
        return self.drw.start

    @property
    def drw_beta(self) -> float:
        return self.drw.beta

    def forward(self, logits, targets, reduction="mean"):
        return ldam_loss(
            logits, targets, None, scale=self.scale, weight=self.weight, reduction=reduction, margins=self.margins
        )


@LOSS_REGISTRY.register("balanced_softmax")
class BalancedSoftmaxLoss(LTLoss):
    """Balanced softmax / LADE-CE `CE(z + log p_s, y)` (Ren et al., NeurIPS 2020, arXiv:2007.10740).

    Args:
        counts: length-K training counts n_c (> 0), giving p_s = n_c / N.
    """

    needs_counts = True

    def __init__(self, counts: ArrayLike) -> None:
        super().__init__()
        self.register_buffer("prior", prior_from_counts(counts), persistent=False)

    def forward(self, logits, targets, reduction="mean"):
        return balanced_softmax_loss(logits, targets, self.prior, reduction=reduction)


@LOSS_REGISTRY.register("lade")
class LADELoss(LTLoss):
    """LADE = LADE-CE + alpha * LADER, a batch-level loss (Hong et al., CVPR 2021, arXiv:2012.00321).

    Args:
        counts: length-K training counts n_c (> 0), giving p_s = n_c / N.
        alpha: weight of L_LADER.
        lam: lambda of LADER's squared term.
        importance: "label" or "column" (`lader`).
    """

    per_example = False
    needs_counts = True

    def __init__(
        self,
        counts: ArrayLike,
        alpha: float = LADE_DEFAULTS.alpha,
        lam: float = LADE_DEFAULTS.lam,
        importance: str = LADE_DEFAULTS.importance,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.lam = lam
        self.importance = importance
        self.register_buffer("prior", prior_from_counts(counts), persistent=False)

    def forward(self, logits, targets, reduction="mean"):
        self._require_per_example(reduction)
        return lade_loss(logits, targets, self.prior, self.alpha, self.lam, self.importance)


def build_loss(name: str, counts: ArrayLike | None = None, **kwargs) -> LTLoss:
    """Build the loss registered as `name` (see LOSS_REGISTRY) from per-class training counts and its options.

    `counts` has one entry per logit column (detection: C foreground classes + background). Losses that do not
    use class statistics ("ce", "focal") accept and ignore it.

    Args:
        name: a registered loss name: "ce", "cb", "focal", "cb_focal", "ldam", "balanced_softmax", "lade", or one
            added with `register_loss`.
        counts: per-class training counts, one per logit column; may be None for losses that do not use them.
        kwargs: the loss's own constructor options (e.g. gamma=, beta=); unknown ones raise TypeError.

    Returns:
        The loss module.
    """
    if name not in LOSS_REGISTRY:
        known = ", ".join(sorted(LOSS_REGISTRY.names()))
        raise ValueError(f"build_loss: unknown loss {name!r}; known losses: {known}.")
    cls = LOSS_REGISTRY.get(name)
    if cls.needs_counts and counts is None:
        raise ValueError(f"build_loss: loss {name!r} needs per-class training counts; pass counts=n_c (length C).")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "counts")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"build_loss: loss {name!r} got unknown options {unknown}; it accepts {accepted}.")
    return cls(counts=counts, **kwargs)
