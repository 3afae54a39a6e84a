"""digits-LT: scikit-learn's bundled 8x8 handwritten digits (a real dataset that needs no download), long-tailed.

Per class, a seeded permutation is cut into: a balanced test split (`test_per_class`), an optional balanced val
split (`val_per_class`, e.g. the meta-weighting dev set), then the long-tailed training subset of n_c images with
`n_c = floor(n_max * (1/IF)^(c/9))` (class 0 is the head). The smallest digit class has 174 images, so
`n_max + test_per_class + val_per_class <= 174` is required.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import LTDatasetSplits, TensorImageDataset, long_tail_counts

__all__ = ["build_digits_lt"]


def build_digits_lt(
    root: str | None = None,
    *,
    imbalance_factor: float = 20,
    n_max: int = 120,
    test_per_class: int = 50,
    val_per_class: int = 0,
    seed: int = 0,
) -> LTDatasetSplits:
    """Build digits-LT; `root` is unused (the data ship with scikit-learn). Images: float (1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: never downloads

    digits = load_digits()
    images = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    num_classes = 10
    train_counts = long_tail_counts(n_max, num_classes, imbalance_factor)

    rng = np.random.default_rng(seed)
    split_idx: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        needed = test_per_class + val_per_class + int(train_counts[c])
        if needed > len(idx):
            raise ValueError(
                f"digits_lt: class {c} has {len(idx)} images but test_per_class={test_per_class} + "
                f"val_per_class={val_per_class} + n_c={train_counts[c]} = {needed}; lower n_max or the per-class splits"
            )
        split_idx["test"].append(idx[:test_per_class])
        split_idx["val"].append(idx[test_per_class : test_per_class + val_per_class])
        split_idx["train"].append(idx[test_per_class + val_per_class : needed])

    def subset(name: str) -> TensorImageDataset:
        idx = np.sort(np.concatenate(split_idx[name]))  # dataset order, not grouped by class
        dataset = TensorImageDataset(images[idx], labels[idx])
        dataset.source_indices = idx  # positions in load_digits(), to audit the split
        return dataset

    return LTDatasetSplits(
        train=subset("train"),
        test=subset("test"),
        val=subset("val") if val_per_class > 0 else None,
        num_classes=num_classes,
        train_counts=train_counts,
        class_names=[str(c) for c in range(num_classes)],
        info=dict(
            name="digits_lt",
            imbalance_factor=imbalance_factor,
            n_max=n_max,
            test_per_class=test_per_class,
            val_per_class=val_per_class,
            seed=seed,
            source="sklearn.datasets.load_digits",
        ),
    )
