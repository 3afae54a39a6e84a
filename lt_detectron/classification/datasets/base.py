"""What every classification dataset builder returns, and the long-tailed count profile
(docs/methods.md#data-and-metrics)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["LTDatasetSplits", "TensorImageDataset", "long_tail_counts", "default_root", "IMBALANCE_FACTORS"]

# The imbalance factors of the CIFAR-LT benchmarks (Jamal et al., CVPR 2020, arXiv:2003.10780, Tables 2-3); any
# value >= 1 is accepted.
IMBALANCE_FACTORS = (200, 100, 50, 20, 10, 1)


@dataclass
class LTDatasetSplits:
    """Train/test (and optional val) splits of one long-tailed benchmark.

    Every split is a torch Dataset yielding `(image_tensor, int_label)` and exposes `targets` (one int label per
    sample, in dataset order) so samplers can balance classes without decoding images.
    `train_counts[c]` is n_c, the number of training images of class c.
    """

    train: Dataset
    test: Dataset
    num_classes: int
    train_counts: np.ndarray
    class_names: list[str]
    val: Optional[Dataset] = None
    info: dict = field(default_factory=dict)  # where the data came from and the options used (for logs)

    def __post_init__(self) -> None:
        self.train_counts = np.asarray(self.train_counts, dtype=np.int64)
        if self.train_counts.shape != (self.num_classes,):
            raise ValueError(f"train_counts has shape {self.train_counts.shape}, expected ({self.num_classes},)")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")


class TensorImageDataset(Dataset):
    """In-memory images `(N, ...)` float tensor + int labels, with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], transform: Optional[Callable] = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(y) for y in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def long_tail_counts(n_max: int, num_classes: int, imbalance_factor: float) -> np.ndarray:
    """Exponential profile `n_c = floor(n_max * (1/IF)^(c / (C-1)))`, c = 0..C-1 (Cao et al., NeurIPS 2019,
    arXiv:1906.07413)."""
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1 (n_max / n_min), got {imbalance_factor}")
    if num_classes < 1 or n_max < 1:
        raise ValueError(f"need num_classes >= 1 and n_max >= 1, got {num_classes}, {n_max}")
    if num_classes == 1:
        return np.array([n_max], dtype=np.int64)
    counts = [math.floor(n_max * (1.0 / imbalance_factor) ** (c / (num_classes - 1))) for c in range(num_classes)]
    return np.array(counts, dtype=np.int64)


def default_root() -> str:
    """Dataset root when none is given: $LT_DATASETS, else ./datasets (Detectron2's DETECTRON2_DATASETS convention)."""
    return os.environ.get("LT_DATASETS", "datasets")


def require_files(folder: str, names: Sequence[str], dataset: str, source: str) -> None:
    """Raise FileNotFoundError naming every missing file under `folder` and where the data comes from."""
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: missing {', '.join(missing)} in {os.path.abspath(folder)} (expected files: "
            f"{', '.join(names)}). {source} Pass root=... or set $LT_DATASETS; nothing is downloaded."
        )
