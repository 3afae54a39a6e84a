"""CIFAR-10-LT / CIFAR-100-LT from the standard CIFAR python archives on disk (torchvision's loaders, no download).

Layout: `<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` and
`<root>/cifar-100-python/{train, test, meta}` (the extracted archives from https://www.cs.toronto.edu/~kriz/cifar.html).
The training set keeps n_c = floor(n_max * (1/IF)^(c/(C-1))) images of class c (a seeded choice); test is unchanged.
"""

from __future__ import annotations

import os

import numpy as np
import torchvision
from torchvision import transforms as T

from .base import LTDatasetSplits, long_tail_counts, require_files

__all__ = ["build_cifar_lt", "cifar_transforms"]

_MEAN_STD = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _without_md5(file_list: list) -> list:
    # torchvision's check_integrity(path, md5=None) only checks that the file exists.
    return [(name, None) for name, _ in file_list]


class _CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10; `verify_md5=False` accepts files in the right format whose md5 differs
    (test fixtures, re-pickled copies). The real archives pass with the default `verify_md5=True`."""

    def __init__(self, root: str, train: bool, transform, verify_md5: bool = True):
        if not verify_md5:
            self.train_list = _without_md5(type(self).train_list)
            self.test_list = _without_md5(type(self).test_list)
            self.meta = {**type(self).meta, "md5": None}
        super().__init__(root, train=train, transform=transform, download=False)


class _CIFAR100(torchvision.datasets.CIFAR100, _CIFAR10):
    """CIFAR100 with the same `verify_md5` switch (MRO: CIFAR100's file lists, _CIFAR10's __init__)."""


def cifar_transforms(num_classes: int, train: bool, augment: bool = True) -> T.Compose:
    """Standard CIFAR pipeline: random crop 32 (pad 4) + horizontal flip for training, then normalise."""
    mean, std = _MEAN_STD[num_classes]
    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if (train and augment) else []
    return T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])


def build_cifar_lt(
    root: str,
    *,
    num_classes: int = 10,
    imbalance_factor: float = 100,
    seed: int = 0,
    augment: bool = True,
    verify_md5: bool = True,
) -> LTDatasetSplits:
    """Build CIFAR-{10,100}-LT under `root`; `imbalance_factor` = n_max / n_min (1 = the full balanced set)."""
    if num_classes == 10:
        cls, folder, files = (
            _CIFAR10,
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"],
        )
    elif num_classes == 100:
        cls, folder, files = _CIFAR100, "cifar-100-python", ["train", "test", "meta"]
    else:
        raise ValueError(f"CIFAR-LT has 10 or 100 classes, got num_classes={num_classes}")
    name = f"cifar{num_classes}_lt"
    require_files(
        os.path.join(root, folder),
        files,
        name,
        f"Extract the CIFAR-{num_classes} python archive (https://www.cs.toronto.edu/~kriz/cifar.html) into {root}.",
    )
    train = cls(root, train=True, transform=cifar_transforms(num_classes, True, augment), verify_md5=verify_md5)
    test = cls(root, train=False, transform=cifar_transforms(num_classes, False), verify_md5=verify_md5)

    targets = np.asarray(train.targets, dtype=np.int64)
    available = np.bincount(targets, minlength=num_classes)
    n_max = int(available.max())
    train_counts = long_tail_counts(n_max, num_classes, imbalance_factor)
    short = np.flatnonzero(available < train_counts)
    if short.size:
        raise ValueError(
            f"{name}: classes {short.tolist()} have fewer training images than the LT profile needs "
            f"({available[short].tolist()} < {train_counts[short].tolist()}); is {root}/{folder} complete?"
        )
    rng = np.random.default_rng(seed)
    keep = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(targets == c))[: train_counts[c]] for c in range(num_classes)])
    )
    # Subset torchvision's in-memory arrays, so the dataset stays a plain CIFAR dataset with its transform.
    train.data = train.data[keep]
    train.targets = targets[keep].tolist()

    return LTDatasetSplits(
        train=train,
        test=test,
        num_classes=num_classes,
        train_counts=train_counts,
        class_names=list(train.classes),
        info=dict(name=name, root=os.path.abspath(root), imbalance_factor=imbalance_factor, n_max=n_max, seed=seed),
    )
