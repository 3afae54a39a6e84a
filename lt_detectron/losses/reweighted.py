"""Re-weighted losses: class-balanced cross-entropy and focal loss.

Class-balanced weights: Cui et al., CVPR 2019, arXiv:1901.05555.
Focal loss: Lin et al., ICCV 2017, arXiv:1708.02002.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..utils import torch_compat
from ._validation import ArrayLike, check_class_weight, check_logits_targets, check_reduction, reduce_loss

FOCAL_FORMS = ("softmax", "sigmoid")


@dataclass(frozen=True)
class CBDefaults:
    """Paper defaults of class-balanced weights (Cui et al., "Class-Balanced Loss Based on Effective Number of
    Samples", CVPR 2019, arXiv:1901.05555). A config's beta None means `effective_number_beta`, (N - 1) / N.

    Attributes:
        beta: effective-number beta of the class weights.
    """

    beta: float = 0.9999


@dataclass(frozen=True)
class FocalDefaults:
    """Paper defaults of the focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
    arXiv:1708.02002). Cui et al.'s CB-focal uses the sigmoid form; the softmax form is this project's default.

    Attributes:
        gamma: focusing parameter.
        form: "softmax" or "sigmoid" (`focal_loss`).
    """

    gamma: float = 2.0
    form: str = "softmax"


CB_DEFAULTS = CBDefaults()
FOCAL_DEFAULTS = FocalDefaults()


def cb_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weight: ArrayLike, reduction: str = "mean"
) -> torch.Tensor:
    """`w_{y_i} * CE(z_i, y_i)`, batch mean (CB cross-entropy; Cui et al. 2019;
    Jamal et al. 2020 §4.1).

    Unlike `F.cross_entropy(weight=...)`, "mean" divides by the batch size, not by the sum of the weights.

    Args:
        logits: (B, C) logits.
        targets: (B,) integer class indices in [0, C).
        weight: length-C class weights w_c (>= 0), e.g. `class_weights(counts)`.
        reduction: "mean" (0 for an empty batch), "sum" or "none".

    Returns:
        The scalar loss, or the (B,) per-example losses for reduction="none".
    """
    fn = "cb_cross_entropy"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    return reduce_loss(F.cross_entropy(logits, targets, weight=weight, reduction="none"), reduction)


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = FOCAL_DEFAULTS.gamma,
    weight: ArrayLike | None = None,
    form: str = FOCAL_DEFAULTS.form,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss `-(1 - p_t)^gamma log p_t`, times `w_{y_i}` when weighted (Lin et al. 2017 eq. 4).

    form="softmax": p_t is the softmax probability of the target class. form="sigmoid": one binary focal term per
    class against the one-hot target (Cui et al.'s CB-focal), summed over classes; the per-example weight
    `w_{y_i}` multiplies all of them.

    Args:
        logits: (B, C) logits.
        targets: (B,) integer class indices in [0, C).
        gamma: focusing parameter (>= 0); 0 is cross-entropy (softmax form).
        weight: optional length-C class weights w_c (>= 0); None = unweighted.
        form: "softmax" or "sigmoid", as above.
        reduction: "mean" (sum over the batch divided by B, 0 for an empty batch), "sum" or "none".

    Returns:
        The scalar loss, or the (B,) per-example losses for reduction="none".
    """
    fn = "focal_loss"
    check_reduction(reduction, fn)
    if form not in FOCAL_FORMS:
        raise ValueError(f"{fn}: form must be one of {FOCAL_FORMS}; got {form!r}.")
    if gamma < 0:
        raise ValueError(f"{fn}: gamma must be >= 0; got {gamma}.")
    targets = check_logits_targets(logits, targets, fn)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)

    if form == "softmax":
        if torch_compat.functorch_transforms_active():
            # torch.func (the meta-weighting engine differentiates the loss twice): plain autograd ops.
            log_pt = -F.cross_entropy(logits, targets, reduction="none")
            per_example = -_one_minus_pt(log_pt).pow(gamma) * log_pt
        else:
            per_example = _SoftmaxFocalFunction.apply(logits, targets, float(gamma))
    else:
        from torchvision.ops import sigmoid_focal_loss  # lazy: keeps `import lt_detectron.losses` light

        one_hot = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
        per_example = sigmoid_focal_loss(logits, one_hot, alpha=-1, gamma=gamma, reduction="none").sum(dim=1)
    if weight is not None:
        per_example = per_example * weight[targets]
    return reduce_loss(per_example, reduction)


def _one_minus_pt(log_pt: torch.Tensor) -> torch.Tensor:
    """1 - p_t via expm1 (precise when p_t ~ 1), floored so that d/dp (1 - p)^gamma stays finite for gamma < 1."""
    return (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)


class _SoftmaxFocalFunction(torch.autograd.Function):
    """Per-example softmax focal loss `-(1 - p_t)^gamma log p_t` with a hand-written gradient.

    With l_i = log p_t = log_softmax(z_i)_{y_i} and f(l) = -(1 - e^l)^gamma l:
      f'(l) = -(1 - p)^gamma + gamma (1 - p)^(gamma - 1) p l,   dL/dz_ic = g_i f'(l_i) ([c = y_i] - q_ic).
    Composed from autograd ops (cross-entropy plus eight (B,) ops and their backward nodes) it was too slow
    for the 2x-of-cross-entropy budget (benchmarks/results/loss_throughput.md); here the (B, C) work is one
    log-softmax forward and one softmax backward, as in cross-entropy. Not twice differentiable: under torch.func
    transforms `focal_loss` uses the composed form.
    """

    @staticmethod
    def forward(ctx, logits, targets, gamma):
        log_q = torch.log_softmax(logits, dim=1)
        log_pt = log_q.gather(1, targets[:, None]).squeeze(1)
        one_minus = _one_minus_pt(log_pt)
        focal_factor = one_minus.pow(gamma)
        ctx.save_for_backward(log_q, targets, log_pt, one_minus, focal_factor)
        ctx.gamma = gamma
        return -focal_factor * log_pt

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_example):
        log_q, targets, log_pt, one_minus, focal_factor = ctx.saved_tensors
        # gamma (1-p)^(gamma-1) p l, written as gamma (1-p)^gamma / (1-p) p l so that gamma = 0 needs no 0^-1.
        d_log_pt = -focal_factor + ctx.gamma * (focal_factor / one_minus) * log_pt.exp() * log_pt
        # log_softmax_backward(G, log q) = G - q sum(G): with G = a_i onehot(y_i) it is a_i (onehot - q), the
        # gradient above for a_i = g_i f'(l_i), in cross-entropy's own fused backward kernel.
        target_grad = (grad_per_example * d_log_pt)[:, None]
        grad_log_q = torch.zeros_like(log_q).scatter_(1, targets[:, None], target_grad)
        return torch_compat.log_softmax_backward(grad_log_q, log_q, 1), None, None
