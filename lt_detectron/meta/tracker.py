"""Per-class running mean of the conditional weights eps over training (Jamal et al.,
CVPR 2020, arXiv:2003.10780, Figure 3)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["EpsTracker"]


class EpsTracker:
    """Accumulates eps per class and closes one time point every `period` updates.

    `history()` gives the iterations at which points were closed and the per-class mean of eps over the
    updates since the previous point (NaN for a class that had no example in that window).

    Args:
        num_classes: C, the number of classes tracked (>= 1).
        period: updates per time point (>= 1).
    """

    def __init__(self, num_classes: int, period: int = 20):
        if num_classes < 1 or period < 1:
            raise ValueError(f"EpsTracker: num_classes ({num_classes}) and period ({period}) must be >= 1")
        self.num_classes = int(num_classes)
        self.period = int(period)
        self._window_sum = np.zeros(self.num_classes)
        self._window_count = np.zeros(self.num_classes, dtype=np.int64)
        self._total_sum = np.zeros(self.num_classes)
        self._total_count = np.zeros(self.num_classes, dtype=np.int64)
        self._updates = 0
        self._iterations: list[int] = []
        self._means: list[np.ndarray] = []

    def update(self, eps: Tensor, labels: Tensor, iteration: int) -> None:
        """Add one batch of conditional weights `eps[i]` for examples of class `labels[i]`.

        Args:
            eps: Tensor[B] of conditional weights.
            labels: Tensor[B] of their classes, in [0, num_classes).
            iteration: the training iteration, recorded when this update closes a point.
        """
        self.add_sums(*self.class_sums(eps, labels), iteration)

    def class_sums(self, eps: Tensor, labels: Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """Per-class sum of `eps` and number of examples: what `update` adds for one batch.

        Args:
            eps: Tensor[B] of conditional weights.
            labels: Tensor[B] of their classes, in [0, num_classes).

        Returns:
            (sums [num_classes] float64, counts [num_classes] int64).
        """
        eps_np = eps.detach().double().cpu().numpy().reshape(-1)
        labels_np = labels.detach().cpu().numpy().reshape(-1).astype(np.int64)
        if eps_np.shape != labels_np.shape:
            raise ValueError(f"EpsTracker.update: eps has {eps_np.size} entries but labels {labels_np.size}")
        if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= self.num_classes):
            raise ValueError(
                f"EpsTracker.update: labels must lie in [0, {self.num_classes}); "
                f"got {labels_np.min()}..{labels_np.max()}"
            )
        sums = np.bincount(labels_np, weights=eps_np, minlength=self.num_classes)
        return sums, np.bincount(labels_np, minlength=self.num_classes)

    def add_sums(self, sums: np.ndarray, counts: np.ndarray, iteration: int) -> None:
        """Add one update given as per-class sums and counts of eps (`class_sums`); closes a point every `period`.

        Args:
            sums: [num_classes] sums of eps per class.
            counts: [num_classes] number of examples per class.
            iteration: the training iteration, recorded when this update closes a point.
        """
        self._window_sum += sums
        self._window_count += counts
        self._total_sum += sums
        self._total_count += counts
        self._updates += 1
        if self._updates % self.period == 0:
            self._close_point(iteration)

    def _close_point(self, iteration: int) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self._window_count > 0, self._window_sum / np.maximum(self._window_count, 1), np.nan)
        self._iterations.append(int(iteration))
        self._means.append(mean)
        self._window_sum[:] = 0.0
        self._window_count[:] = 0

    def history(self) -> Tuple[np.ndarray, np.ndarray]:
        """(iterations [T], per-class mean eps [T, num_classes])."""
        if not self._means:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.num_classes))
        return np.asarray(self._iterations, dtype=np.int64), np.stack(self._means)

    def overall_mean(self) -> np.ndarray:
        """Per-class mean of eps over every update so far (NaN for classes never seen)."""
        return np.where(self._total_count > 0, self._total_sum / np.maximum(self._total_count, 1), np.nan)

    def state_dict(self) -> Dict[str, Any]:
        """Tensors, numbers and lists only, so checkpoints load with torch.load(weights_only=True)."""
        return {
            "num_classes": self.num_classes,
            "period": self.period,
            "window_sum": torch.from_numpy(self._window_sum.copy()),
            "window_count": torch.from_numpy(self._window_count.copy()),
            "total_sum": torch.from_numpy(self._total_sum.copy()),
            "total_count": torch.from_numpy(self._total_count.copy()),
            "updates": self._updates,
            "iterations": list(self._iterations),
            "means": [torch.from_numpy(m.copy()) for m in self._means],
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the period, the sums and the closed points.

        Args:
            state: a dict from `state_dict`, for the same number of classes.
        """
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(
                f"EpsTracker.load_state_dict: checkpoint tracks {state['num_classes']} classes, this run "
                f"{self.num_classes}; resume with the same dataset (or start a fresh run)"
            )
        self.period = int(state["period"])
        self._window_sum = np.asarray(state["window_sum"], dtype=np.float64).copy()
        self._window_count = np.asarray(state["window_count"], dtype=np.int64).copy()
        self._total_sum = np.asarray(state["total_sum"], dtype=np.float64).copy()
        self._total_count = np.asarray(state["total_count"], dtype=np.int64).copy()
        self._updates = int(state["updates"])
        self._iterations = [int(i) for i in state["iterations"]]
        self._means = [np.asarray(m, dtype=np.float64).copy() for m in state["means"]]
