"""Long-tailed classification datasets: `build_dataset(name, root=None, **kw) -> LTDatasetSplits`.

On-disk layout under `root` (default: $LT_DATASETS, else ./datasets); nothing is ever downloaded:

    cifar-10-batches-py/   cifar-100-python/          the CIFAR python archives, extracted
    ImageNet_LT/ImageNet_LT_{train,val,test}.txt      images under ImageNet_LT/ (or image_root=...)
    Places_LT/Places_LT_{train,val,test}.txt          images under Places_LT/ (or image_root=...)
    iNat2017/{train,val}2017.json   iNat2018/{train,val}2018.json   images under the same folder (or image_root=...)

digits_lt needs no files (scikit-learn ships the data).
"""
from __future__ import annotations

import os
from typing import Callable

from .base import IMBALANCE_FACTORS, LTDatasetSplits, TensorImageDataset, default_root, long_tail_counts
from .cifar import build_cifar_lt
from .digits import build_digits_lt
from .image_list import ImageListDataset, build_inat, build_list_dataset

__all__ = [
    "build_dataset", "DATASETS", "LTDatasetSplits", "TensorImageDataset", "ImageListDataset",
    "long_tail_counts", "IMBALANCE_FACTORS",
]

# name -> builder(root, **kw); root is the datasets folder, each builder picks its own sub-folder.
DATASETS: dict[str, Callable[..., LTDatasetSplits]] = {
    "digits_lt": lambda root, **kw: build_digits_lt(root, **kw),
    "cifar10_lt": lambda root, **kw: build_cifar_lt(root, num_classes=10, **kw),
    "cifar100_lt": lambda root, **kw: build_cifar_lt(root, num_classes=100, **kw),
    "imagenet_lt": lambda root, **kw: build_list_dataset(
        "imagenet_lt", os.path.join(root, "ImageNet_LT"), prefix="ImageNet_LT", **kw),
    "places_lt": lambda root, **kw: build_list_dataset(
        "places_lt", os.path.join(root, "Places_LT"), prefix="Places_LT", **kw),
    "inat2017": lambda root, **kw: build_inat("inat2017", os.path.join(root, "iNat2017"), year=2017, **kw),
    "inat2018": lambda root, **kw: build_inat("inat2018", os.path.join(root, "iNat2018"), year=2018, **kw),
}


def build_dataset(name: str, root: str | None = None, **kwargs) -> LTDatasetSplits:
    """Build a long-tailed benchmark by name; keyword arguments go to its builder (e.g. imbalance_factor, seed)."""
    if name not in DATASETS:
        raise ValueError(f"unknown classification dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](default_root() if root is None else root, **kwargs)
