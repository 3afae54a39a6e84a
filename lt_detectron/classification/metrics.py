"""Classification metrics of the long-tailed papers, from logits: one json-serialisable dict.

The metrics are defined in docs/methods.md#data-and-metrics.

Conventions: accuracies, recalls and ECE are percentages (0..100); NLL is in nats. Per-class recall of a class with
no test sample is None and is left out of every mean. Shot groups use training counts: many (> 100),
medium (20..100), few (< 20); a group's accuracy is the mean recall of its classes (the usual per-class average),
None when the group is empty.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from lt_detectron.losses import adjust_logits  # the one PC-Softmax / prior-injection implementation

__all__ = [
    "evaluate",
    "shifted_prior_accuracy",
    "shifted_prior",
    "confusion_matrix",
    "reliability_bins",
    "shot_groups",
    "SHIFT_RATIOS",
]

SHIFT_RATIOS = (50, 25, 10, 5, 2, 1)  # Hong et al., CVPR 2021, arXiv:2012.00321, Table 6
# How target-prior injection treats the logits: "source" = they carry the training prior (CE-like training,
# PC Softmax: z - log p_s + log p_t); "balanced" = they are prior-free (balanced softmax / LADE: z + log p_t).
Injection = Union[None, str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]


def _as_inputs(
    logits: ArrayLike, labels: ArrayLike, train_counts: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    logits = torch.as_tensor(logits).detach().cpu()
    if logits.dtype != torch.float64:
        logits = logits.float()  # float32 keeps big (N, C) inputs (iNaturalist: 24K x 8K) affordable
    labels = torch.as_tensor(labels).detach().cpu().long()
    counts = np.asarray(train_counts, dtype=np.float64)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    n, c = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must be (N,) = ({n},) to match logits, got shape {tuple(labels.shape)}")
    if counts.shape != (c,):
        raise ValueError(f"train_counts must have one entry per class ({c}), got shape {counts.shape}")
    if n == 0:
        raise ValueError("no test samples: logits and labels are empty")
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"labels must be in 0..{c - 1}, got range {int(labels.min())}..{int(labels.max())}")
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf; the model diverged or the logits were corrupted")
    return logits, labels, counts


def confusion_matrix(predictions: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """`cm[t, p]` = number of samples of true class t predicted as p."""
    idx = torch.as_tensor(labels).long() * num_classes + torch.as_tensor(predictions).long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def shot_groups(train_counts: ArrayLike) -> np.ndarray:
    """ "many" (> 100 training images), "medium" (20..100), "few" (< 20) per class.

    Shot groups as in docs/methods.md#data-and-metrics.
    """
    counts = np.asarray(train_counts)
    return np.where(counts > 100, "many", np.where(counts >= 20, "medium", "few"))


def _per_class_recall(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Recall per class in [0, 1]; NaN where the class has no test sample. O(N + C), no C x C matrix."""
    support = torch.bincount(labels, minlength=num_classes).numpy()
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes).numpy()
    return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def _mean_or_none(values: np.ndarray) -> Optional[float]:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, num_bins: int = 15) -> dict:
    """Equal-width bins on the max probability; bin b holds confidences in (b/M, (b+1)/M].

    ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)| (Guo et al. 2017), in percent.
    """
    confidence, prediction = probs.max(dim=1)
    confidence = confidence.double()
    correct = (prediction == labels).double()
    bins = (torch.ceil(confidence * num_bins).long() - 1).clamp(0, num_bins - 1)
    count = torch.bincount(bins, minlength=num_bins).double()
    acc_sum = torch.bincount(bins, weights=correct, minlength=num_bins)
    conf_sum = torch.bincount(bins, weights=confidence, minlength=num_bins)
    nonempty = count > 0
    ece = ((acc_sum - conf_sum).abs()[nonempty].sum() / len(labels)).item()
    safe = count.clamp(min=1)
    return {
        "bin_edges": np.linspace(0.0, 1.0, num_bins + 1).tolist(),
        "count": count.long().tolist(),
        "accuracy": [float(a) if ne else None for a, ne in zip((acc_sum / safe).tolist(), nonempty.tolist())],
        "confidence": [float(c) if ne else None for c, ne in zip((conf_sum / safe).tolist(), nonempty.tolist())],
        "ece": 100.0 * ece,
    }


def shifted_prior(num_classes: int, ratio: float, profile: str) -> np.ndarray:
    """Seed 003 §4.3 class sizes over classes ranked by training frequency (rank j = 1..C, most frequent first):
    forward `n_j = N * mu^((j-1)/C)`, backward `n_j = N * mu^((C-j)/C)`, normalised to sum 1.

    The paper's test set has N images per class and n_j <= N, so its mu is the inverse of the imbalance ratio:
    mu = 1 / ratio. Forward then keeps the most frequent classes largest (it resembles the training prior more as
    the ratio grows); backward flips the order; ratio 1 is the uniform prior."""
    if ratio < 1:
        raise ValueError(f"shift ratio must be >= 1 (largest / smallest class), got {ratio}")
    j = np.arange(1, num_classes + 1, dtype=np.float64)
    mu = 1.0 / ratio
    if profile == "forward":
        sizes = mu ** ((j - 1) / num_classes)
    elif profile == "backward":
        sizes = mu ** ((num_classes - j) / num_classes)
    else:
        raise ValueError(f"profile must be 'forward' or 'backward', got {profile!r}")
    return sizes / sizes.sum()


def _injector(
    injection: Injection, source_prior: torch.Tensor
) -> Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    if injection is None or callable(injection):
        return injection
    if injection == "source":
        return lambda logits, target: adjust_logits(logits, source_prior, target)
    if injection == "balanced":
        uniform = torch.full_like(source_prior, 1.0 / len(source_prior))
        return lambda logits, target: adjust_logits(logits, uniform, target)
    raise ValueError(
        f"prior_injection must be None, 'source', 'balanced' or a callable(logits, target_prior), got {injection!r}"
    )


def shifted_prior_accuracy(
    logits: ArrayLike,
    labels: ArrayLike,
    train_counts: ArrayLike,
    ratios: Sequence[float] = SHIFT_RATIOS,
    inject: Injection = None,
) -> dict:
    """Top-1 accuracy (percent) on forward/backward shifted test priors (Hong et al. 2021 §4.3).

    Computed by importance weighting the (balanced) test set, not by subsampling: accuracy under prior pi is
    `sum_j pi_j * recall_j`, the expected accuracy of a test set with class sizes proportional to pi, deterministic
    and using every test image. Classes are ranked by training count (descending, ties by class index).
    With `inject`, the logits are first adjusted to each target prior ("source", "balanced" or a callable
    `inject(logits, target_prior) -> logits`); without it, one prediction serves every prior.
    Returns {"ratios", "forward", "backward"} (+ "forward_injected", "backward_injected"), lists aligned with ratios.
    """
    logits, labels, counts = _as_inputs(logits, labels, train_counts)
    num_classes = logits.shape[1]
    rank_order = np.argsort(-counts, kind="stable")  # rank_order[j-1] = class of rank j
    source_prior = torch.as_tensor(counts / counts.sum())
    injector = _injector(inject, source_prior)

    def recall(adjusted: torch.Tensor) -> np.ndarray:
        # A class without test samples contributes 0 (its prior mass cannot be measured).
        return np.nan_to_num(_per_class_recall(adjusted.argmax(dim=1), labels, num_classes))

    base_recall = recall(logits)
    result: dict = {"ratios": [float(r) for r in ratios]}
    for profile in ("forward", "backward"):
        plain, injected = [], []
        for ratio in ratios:
            prior = np.empty(num_classes)
            prior[rank_order] = shifted_prior(num_classes, ratio, profile)
            plain.append(100.0 * float(prior @ base_recall))
            if injector is not None:
                adjusted = injector(logits, torch.as_tensor(prior))
                injected.append(100.0 * float(prior @ recall(adjusted)))
        result[profile] = plain
        if injector is not None:
            result[f"{profile}_injected"] = injected
    return result


def evaluate(
    logits: ArrayLike,
    labels: ArrayLike,
    train_counts: ArrayLike,
    *,
    ece_bins: int = 15,
    prior_injection: Injection = None,
    shift_ratios: Optional[Sequence[float]] = SHIFT_RATIOS,
) -> dict:
    """All metrics of the papers from test logits `(N, C)`, labels `(N,)` and training counts `(C,)`.

    Keys: num_samples, num_classes, train_counts, top1/top3/top5 (None when k > C) and top1_error, per_class_recall,
    many/medium/few (+ group sizes),
    bacc (mean per-class recall), gm (geometric mean of per-class recalls: exactly 0 when any class has zero
    recall, as the definition gives; no epsilon), ece (+ reliability bins), nll, shifted_prior
    (see `shifted_prior_accuracy`; `prior_injection` as there; skipped when shift_ratios is None).
    """
    logits, labels, counts = _as_inputs(logits, labels, train_counts)
    n, num_classes = logits.shape
    log_probs = torch.log_softmax(logits, dim=1)

    result: dict = {"num_samples": n, "num_classes": num_classes, "train_counts": counts.astype(int).tolist()}
    predictions = logits.argmax(dim=1)  # the same top-1 rule as the plots and the shifted-prior accuracy
    result["top1"] = 100.0 * (predictions == labels).double().mean().item()
    ranked = logits.topk(min(5, num_classes), dim=1).indices
    for k in (3, 5):
        hit = (ranked[:, :k] == labels[:, None]).any(dim=1).double().mean().item() if k <= num_classes else None
        result[f"top{k}"] = None if hit is None else 100.0 * hit
    result["top1_error"] = 100.0 - result["top1"]

    recall = _per_class_recall(predictions, labels, num_classes)
    result["per_class_recall"] = [None if np.isnan(r) else 100.0 * float(r) for r in recall]
    groups = shot_groups(counts)
    for group in ("many", "medium", "few"):
        mean = _mean_or_none(recall[groups == group])
        result[group] = None if mean is None else 100.0 * mean
        result[f"num_{group}_classes"] = int((groups == group).sum())
    present = recall[~np.isnan(recall)]
    result["bacc"] = 100.0 * float(present.mean())
    result["gm"] = 0.0 if (present == 0).any() else 100.0 * float(np.exp(np.log(present).mean()))

    reliability = reliability_bins(log_probs.exp(), labels, ece_bins)
    result["ece"] = reliability.pop("ece")
    result["reliability"] = reliability
    result["nll"] = float(-log_probs.gather(1, labels[:, None]).mean())
    if shift_ratios is not None:
        result["shifted_prior"] = shifted_prior_accuracy(logits, labels, counts, shift_ratios, prior_injection)
    return result
