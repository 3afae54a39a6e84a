"""Long-tailed classification datasets: `build_dataset(name, root=None, **kw) -> LTDatasetSplits`.

On-disk layout under `root` (default: $LT_DATASETS, else ./datasets); nothing is ever downloaded:

    cifar-10-batches-py/   cifar-100-python/          cifar-10-python.tar.gz / cifar-100-python.tar.gz, extracted
                                                      (md5-checked against the official files: datasets/cifar.py)
    ImageNet_LT/ImageNet_LT_{train,val,test}.txt      images under ImageNet_LT/ (or image_root=...)
    Places_LT/Places_LT_{train,val,test}.txt          images under Places_LT/ (or image_root=...)
    iNat2017/{train,val}2017.json   iNat2018/{train,val}2018.json   images under the same folder (or image_root=...)

digits_lt needs no files (scikit-learn ships the data).
"""

from __future__ import annotations

import os

from lt_detectron.registry import Registry

from .base import IMBALANCE_FACTORS, LTDatasetSplits, TensorImageDataset, default_root, long_tail_counts
from .cifar import build_cifar_lt
from .digits import build_digits_lt
from .image_list import ImageListDataset, build_inat, build_list_dataset

__all__ = [
    "build_dataset",
    "DATASET_REGISTRY",
    "LTDatasetSplits",
    "TensorImageDataset",
    "ImageListDataset",
    "long_tail_counts",
    "IMBALANCE_FACTORS",
]

# DATASET.NAME -> builder(root, **kw); root is the datasets folder, each builder picks its own sub-folder.
# A user project adds one with `@DATASET_REGISTRY.register("name")`.
DATASET_REGISTRY = Registry("LT_CLS_DATASET")


@DATASET_REGISTRY.register("digits_lt")
def _digits_lt(root: str, **kw) -> LTDatasetSplits:
    return build_digits_lt(root, **kw)


@DATASET_REGISTRY.register("cifar10_lt")
def _cifar10_lt(root: str, **kw) -> LTDatasetSplits:
    return build_cifar_lt(root, num_classes=10, **kw)


@DATASET_REGISTRY.register("cifar100_lt")
def _cifar100_lt(root: str, **kw) -> LTDatasetSplits:
    return build_cifar_lt(root, num_classes=100, **kw)


@DATASET_REGISTRY.register("imagenet_lt")
def _imagenet_lt(root: str, **kw) -> LTDatasetSplits:
    return build_list_dataset("imagenet_lt", os.path.join(root, "ImageNet_LT"), prefix="ImageNet_LT", **kw)


@DATASET_REGISTRY.register("places_lt")
def _places_lt(root: str, **kw) -> LTDatasetSplits:
    return build_list_dataset("places_lt", os.path.join(root, "Places_LT"), prefix="Places_LT", **kw)


@DATASET_REGISTRY.register("inat2017")
def _inat2017(root: str, **kw) -> LTDatasetSplits:
    return build_inat("inat2017", os.path.join(root, "iNat2017"), year=2017, **kw)


@DATASET_REGISTRY.register("inat2018")
def _inat2018(root: str, **kw) -> LTDatasetSplits:
    return build_inat("inat2018", os.path.join(root, "iNat2018"), year=2018, **kw)


def build_dataset(name: str, root: str | None = None, **kwargs) -> LTDatasetSplits:
    """Build a long-tailed benchmark by name; keyword arguments go to its builder (e.g. imbalance_factor, seed)."""
    if name not in DATASET_REGISTRY:
        raise ValueError(f"unknown classification dataset {name!r}; known: {', '.join(DATASET_REGISTRY.names())}")
    return DATASET_REGISTRY.get(name)(default_root() if root is None else root, **kwargs)
