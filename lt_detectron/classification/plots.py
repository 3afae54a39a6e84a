"""Pictures of one evaluation (PNG, matplotlib's Agg canvas, written atomically) and `save_evaluation`.

Figures are built with `matplotlib.figure.Figure` directly, so no pyplot state or GUI backend is involved.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from lt_detectron.utils.io import save_figure_atomic
from lt_detectron.utils.io import write_json_atomic as _write_json_atomic

from .metrics import confusion_matrix, shot_groups

__all__ = [
    "plot_reliability",
    "plot_per_class_accuracy",
    "plot_confusion_matrix",
    "plot_shifted_prior",
    "save_evaluation",
    "write_json_atomic",
]

_GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
# Above this many classes the confusion matrix is drawn between shot groups (a C x C matrix would not fit).
MAX_CONFUSION_CLASSES = 1000


def write_json_atomic(data: dict, path: str) -> str:
    """Strict json (NaN/inf rejected), written to a temporary file and moved into place."""
    return _write_json_atomic(data, path, indent=1, allow_nan=False)


def plot_reliability(reliability: dict, path: str, ece: Optional[float] = None) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below."""
    edges = np.asarray(reliability["bin_edges"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc = np.array([np.nan if a is None else a for a in reliability["accuracy"]])
    conf = np.array([np.nan if c is None else c for c in reliability["confidence"]])
    fig = Figure(figsize=(4.5, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centers, np.nan_to_num(acc), width=width, edgecolor="black", color="tab:blue", label="accuracy")
    top.bar(
        centers,
        np.nan_to_num(conf - acc),
        bottom=np.nan_to_num(acc),
        width=width,
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set(
        ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="reliability" + ("" if ece is None else f" (ECE {ece:.2f}%)")
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centers, reliability["count"], width=width, color="gray", edgecolor="black")
    bottom.set(xlabel="confidence (max probability)", ylabel="samples")
    return save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")


def plot_per_class_accuracy(per_class_recall: Sequence[Optional[float]], train_counts: Sequence[int], path: str) -> str:
    """Per-class test accuracy (recall, %) against training images per class (log x), coloured by shot group."""
    counts = np.asarray(train_counts, dtype=float)
    recall = np.array([np.nan if r is None else r for r in per_class_recall])
    groups = shot_groups(counts)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for group, color in _GROUP_COLORS.items():
        mask = (groups == group) & ~np.isnan(recall)
        if mask.any():
            ax.scatter(np.maximum(counts[mask], 1), recall[mask], s=14, color=color, alpha=0.7, label=group)
    for boundary in (20, 100):
        ax.axvline(boundary, color="gray", ls=":", lw=1)
    ax.set(
        xscale="log",
        xlabel="training images of the class (log)",
        ylabel="test accuracy (%)",
        ylim=(-3, 103),
        title="per-class accuracy vs training frequency",
    )
    ax.legend(fontsize=8)
    return save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")


def plot_confusion_matrix(
    predictions: Sequence[int], labels: Sequence[int], train_counts: Sequence[int], path: str
) -> str:
    """Row-normalised confusion matrix, classes ordered by training frequency (head first).

    With more than MAX_CONFUSION_CLASSES classes, the matrix is between shot groups (many/medium/few) instead.
    """
    counts = np.asarray(train_counts)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if len(counts) > MAX_CONFUSION_CLASSES:
        groups = shot_groups(counts)
        group_index = np.select([groups == "many", groups == "medium"], [0, 1], default=2)
        cm = confusion_matrix(group_index[predictions], group_index[labels], 3)
        tick_names, title = ["many", "medium", "few"], "confusion between shot groups"
    else:
        order = np.argsort(-counts, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        cm = confusion_matrix(rank[predictions], rank[labels], len(counts))
        tick_names, title = [str(c) for c in order], "confusion matrix (classes by training frequency)"
    rows = cm.sum(axis=1, keepdims=True)
    normalised = cm / np.maximum(rows, 1)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    if len(tick_names) <= 30:
        ticks = np.arange(len(tick_names))
        ax.set_xticks(ticks, tick_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, tick_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")


def plot_shifted_prior(shifted: dict, path: str) -> str:
    """Accuracy from Forward-50 through uniform to Backward-50 with/without injection.

    The layout of Table 6 of Hong et al., CVPR 2021, arXiv:2012.00321.
    """
    ratios = list(shifted["ratios"])
    fwd = sorted(range(len(ratios)), key=lambda i: -ratios[i])  # forward, most imbalanced first
    bwd = [i for i in sorted(range(len(ratios)), key=lambda i: ratios[i]) if ratios[i] != 1]
    labels = [f"F{ratios[i]:g}" if ratios[i] != 1 else "uniform" for i in fwd] + [f"B{ratios[i]:g}" for i in bwd]
    x = np.arange(len(labels))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for suffix, style, name in (("", "o-", "no injection"), ("_injected", "s--", "target prior injected")):
        if f"forward{suffix}" in shifted:
            y = [shifted[f"forward{suffix}"][i] for i in fwd] + [shifted[f"backward{suffix}"][i] for i in bwd]
            ax.plot(x, y, style, label=name)
    ax.set_xticks(x, labels, rotation=45, fontsize=8)
    ax.set(ylabel="top-1 accuracy (%)", title="shifted test label distributions")
    ax.legend(fontsize=8)
    return save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")


def save_evaluation(result: dict, logits, labels, out_dir: str, prefix: str = "eval") -> dict[str, str]:
    """Write `<prefix>.json` (the `metrics.evaluate` result) and its PNGs into out_dir; return name -> path."""
    predictions = torch.as_tensor(logits).argmax(dim=1).cpu().numpy()
    labels = torch.as_tensor(labels).cpu().numpy()
    join = lambda name: os.path.join(out_dir, f"{prefix}_{name}.png")  # noqa: E731
    paths = {"json": write_json_atomic(result, os.path.join(out_dir, f"{prefix}.json"))}
    paths["reliability"] = plot_reliability(result["reliability"], join("reliability"), result.get("ece"))
    paths["per_class_accuracy"] = plot_per_class_accuracy(
        result["per_class_recall"], result["train_counts"], join("per_class_accuracy")
    )
    paths["confusion"] = plot_confusion_matrix(predictions, labels, result["train_counts"], join("confusion"))
    if "shifted_prior" in result:
        paths["shifted_prior"] = plot_shifted_prior(result["shifted_prior"], join("shifted_prior"))
    return paths
