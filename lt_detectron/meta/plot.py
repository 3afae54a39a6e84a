"""PNG of the per-class mean conditional weight eps over training, by frequency group (Jamal et al.,
CVPR 2020, arXiv:2003.10780, Figure 3)."""

from __future__ import annotations

import warnings
from typing import Dict, Optional, Sequence

import numpy as np

from lt_detectron.utils.io import save_figure_atomic

__all__ = ["plot_eps_by_group", "GROUP_LABELS"]

# Display names of the group codes used by lt_detectron.data.frequency_groups and the shot groups of
# docs/methods.md#data-and-metrics.
GROUP_LABELS: Dict[str, str] = {
    "r": "rare",
    "c": "common",
    "f": "frequent",
    "many": "many-shot",
    "medium": "medium-shot",
    "few": "few-shot",
}
_ORDER = ["r", "c", "f", "few", "medium", "many"]


def plot_eps_by_group(
    iterations: Sequence[int],
    eps_means: np.ndarray,
    groups: Sequence[str],
    path: str,
    *,
    title: str = "meta-learned conditional weights",
) -> Optional[str]:
    """Write a PNG: one faint line per class, and the group mean (nanmean over its classes) in bold.

    The file is written atomically.

    Args:
        iterations: [T] iterations of the time points (`EpsTracker.history()`).
        eps_means: [T, C] per-class mean eps (`EpsTracker.history()`; NaN where a class had no example). Extra
            trailing columns (e.g. detection's background) are ignored.
        groups: `groups[c]` the group of class c ("r"/"c"/"f" or "many"/"medium"/"few"), at most C entries.
        path: the PNG file to write.
        title: the figure title.

    Returns:
        The path written, or None when there is no point to plot (T = 0).
    """
    iters = np.asarray(iterations)
    means = np.asarray(eps_means, dtype=np.float64)
    groups = np.asarray(groups)
    if means.ndim != 2 or means.shape[0] != iters.size:
        raise ValueError(f"plot_eps_by_group: eps_means must be [T={iters.size}, C], got {means.shape}")
    if means.shape[1] < groups.size:
        raise ValueError(f"plot_eps_by_group: {groups.size} groups given for {means.shape[1]} classes")
    if iters.size == 0:
        return None
    means = means[:, : groups.size]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [g for g in _ORDER if g in set(groups.tolist())] + sorted(set(groups.tolist()) - set(_ORDER))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    marker = "o" if iters.size < 30 else None
    for k, g in enumerate(present):
        cols = means[:, groups == g]
        for c in range(cols.shape[1]):
            ax.plot(iters, cols[:, c], color=colors(k), alpha=0.15, linewidth=0.8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: the group had no example in a window
            group_mean = np.nanmean(cols, axis=1)
        ax.plot(
            iters,
            group_mean,
            color=colors(k),
            linewidth=2.2,
            marker=marker,
            label=f"{GROUP_LABELS.get(g, g)} ({cols.shape[1]} classes)",
        )
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("iteration")
    ax.set_ylabel("per-class mean of eps")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()

    return save_figure_atomic(fig, path)
