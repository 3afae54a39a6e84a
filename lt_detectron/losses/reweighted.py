"""Re-weighted losses: class-balanced cross-entropy and focal loss (METHODS §2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validation import ArrayLike, check_class_weight, check_logits_targets, check_reduction, reduce_loss

FOCAL_FORMS = ("softmax", "sigmoid")


def cb_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weight: ArrayLike, reduction: str = "mean"
) -> torch.Tensor:
    """`w_{y_i} * CE(z_i, y_i)`, batch mean (METHODS §2, CB cross-entropy; Cui et al. 2019 via seed 000 §4.1).

    Unlike `F.cross_entropy(weight=...)`, "mean" divides by the batch size, not by the sum of the weights.
    """
    fn = "cb_cross_entropy"
    check_reduction(reduction, fn)
    targets = check_logits_targets(logits, targets, fn)
    weight = check_class_weight(weight, logits.shape[1], fn, logits)
    return reduce_loss(F.cross_entropy(logits, targets, weight=weight, reduction="none"), reduction)


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    weight: ArrayLike | None = None,
    form: str = "softmax",
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss `-(1 - p_t)^gamma log p_t`, times `w_{y_i}` when weighted (METHODS §2; Lin et al. 2017 eq. 4).

    form="softmax": p_t is the softmax probability of the target class. form="sigmoid": one binary focal term per
    class against the one-hot target (Cui et al.'s CB-focal), summed over classes; the per-example weight
    `w_{y_i}` multiplies all of them.
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
        log_pt = -F.cross_entropy(logits, targets, reduction="none")
        # 1 - p_t via expm1 keeps precision when p_t ~ 1; the floor keeps d/dp (1-p)^gamma finite for gamma < 1.
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(logits.dtype).tiny)
        per_example = -one_minus_pt.pow(gamma) * log_pt
    else:
        from torchvision.ops import sigmoid_focal_loss  # lazy: keeps `import lt_detectron.losses` light

        one_hot = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
        per_example = sigmoid_focal_loss(logits, one_hot, alpha=-1, gamma=gamma, reduction="none").sum(dim=1)
    if weight is not None:
        per_example = per_example * weight[targets]
    return reduce_loss(per_example, reduction)
