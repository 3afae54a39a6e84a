"""ImageNet-LT / Places-LT (Liu et al. 2019) from their split lists and iNaturalist 2017/2018 from the official jsons.

Split lists hold `<relative path> <label>` per line (`ImageNet_LT_train.txt`, ...), paths relative to `image_root`
(a leading "/" as in the Places-LT lists is ignored). iNaturalist jsons hold `images[{id, file_name}]`,
`annotations[{image_id, category_id}]` and `categories[{id, name}]`; their `val` json is the test split.
Images are decoded lazily with PIL (torchvision's default loader) and transformed with 224 crops.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets.folder import default_loader

from .base import LTDatasetSplits, require_files

__all__ = [
    "ImageListDataset",
    "read_split_list",
    "read_inat_json",
    "build_list_dataset",
    "build_inat",
    "imagenet_transforms",
]

_IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def imagenet_transforms(train: bool, image_size: int = 224) -> T.Compose:
    """RandomResizedCrop + flip + colour jitter for training; resize to 256/224 of the crop and centre crop for test."""
    if train:
        ops = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4)]
    else:
        ops = [T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size)]
    return T.Compose(ops + [T.ToTensor(), T.Normalize(*_IMAGENET_MEAN_STD)])


class ImageListDataset(Dataset):
    """Images listed as (path, label); `origins[i]` says where sample i was declared (for error messages)."""

    def __init__(
        self,
        image_root: str,
        samples: Sequence[tuple[str, int]],
        origins: Sequence[str],
        transform: Optional[Callable] = None,
        loader: Callable = default_loader,
    ):
        self.image_root = image_root
        self.paths = [os.path.join(image_root, p.lstrip("/")) for p, _ in samples]
        self.targets = [int(y) for _, y in samples]
        self.origins = list(origins)
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        path = self.paths[index]
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"image {path} (declared at {self.origins[index]}) does not exist; check image_root={self.image_root!r}"
            )
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def _check_image_root(name: str, dataset: ImageListDataset) -> None:
    """One cheap check that image_root is right; a missing image later names its list file and line."""
    if not os.path.isfile(dataset.paths[0]):
        raise FileNotFoundError(
            f"{name}: {dataset.paths[0]} (from {dataset.origins[0]}) does not exist; "
            f"pass image_root= the folder the listed paths are relative to"
        )


def read_split_list(path: str) -> tuple[list[tuple[str, int]], list[str]]:
    """Parse a `<relative path> <label>` list; a malformed line raises ValueError naming file:line and the fix."""
    samples, origins = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)  # the label is the last field; paths may contain spaces
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
                raise ValueError(
                    f"{path}:{line_no}: expected '<relative image path> <non-negative int label>', "
                    f"got {line.rstrip()!r}; fix or remove this line"
                )
            samples.append((parts[0].strip(), int(parts[1])))
            origins.append(f"{path}:{line_no}")
    if not samples:
        raise ValueError(f"{path}: no samples; expected '<relative image path> <label>' per line")
    return samples, origins


def _check_labels(samples: Sequence[tuple[str, int]], origins: Sequence[str], num_classes: int) -> None:
    for (_, label), origin in zip(samples, origins):
        if label >= num_classes:
            raise ValueError(
                f"{origin}: label {label} is out of range for {num_classes} classes "
                f"(labels must be 0..{num_classes - 1}; pass num_classes= if the training list lacks classes)"
            )


def _counts(targets: Sequence[int], num_classes: int, name: str) -> np.ndarray:
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0)[:10].tolist()
        raise ValueError(
            f"{name}: classes {empty}... have no training image; every class needs n_c >= 1 "
            f"(check the training list and num_classes)"
        )
    return counts


def build_list_dataset(
    name: str,
    root: str,
    *,
    prefix: str,
    image_root: Optional[str] = None,
    num_classes: Optional[int] = None,
    image_size: int = 224,
) -> LTDatasetSplits:
    """ImageNet-LT style: `<root>/<prefix>_{train,val,test}.txt`; images under `image_root` (default `root`)."""
    splits = ("train", "val", "test")
    files = [f"{prefix}_{s}.txt" for s in splits]
    require_files(root, files, name, f"The {prefix} split lists come from the OLTR release (Liu et al. 2019).")
    image_root = root if image_root is None else image_root
    parsed = {s: read_split_list(os.path.join(root, f)) for s, f in zip(splits, files)}
    if num_classes is None:
        num_classes = max(label for _, label in parsed["train"][0]) + 1
    for samples, origins in parsed.values():
        _check_labels(samples, origins, num_classes)
    datasets = {
        s: ImageListDataset(image_root, *parsed[s], transform=imagenet_transforms(s == "train", image_size))
        for s in splits
    }
    _check_image_root(name, datasets["train"])
    return LTDatasetSplits(
        train=datasets["train"],
        test=datasets["test"],
        val=datasets["val"],
        num_classes=num_classes,
        train_counts=_counts(datasets["train"].targets, num_classes, name),
        class_names=[str(c) for c in range(num_classes)],
        info=dict(name=name, root=os.path.abspath(root), image_root=os.path.abspath(image_root)),
    )


def read_inat_json(path: str) -> tuple[list[tuple[str, int]], list[str], list[dict]]:
    """Parse an iNaturalist json: (file_name, category_id) per image, origins, and the categories list."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}: not valid json ({e}); expected the official iNaturalist annotation file"
            ) from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(
                f"{path}: field '{key}' is missing or not a list; expected the official iNaturalist format with "
                "images[{id, file_name}], annotations[{image_id, category_id}], categories[{id, name}]"
            )
    label_of: dict = {}
    for i, ann in enumerate(data["annotations"]):
        if "image_id" not in ann or "category_id" not in ann:
            raise ValueError(f"{path}: annotations[{i}] lacks 'image_id' or 'category_id'")
        if ann["image_id"] in label_of:
            raise ValueError(
                f"{path}: image_id {ann['image_id']} has more than one annotation; iNaturalist has one label per image"
            )
        label_of[ann["image_id"]] = ann["category_id"]
    samples, origins = [], []
    for i, img in enumerate(data["images"]):
        if "id" not in img or "file_name" not in img:
            raise ValueError(f"{path}: images[{i}] lacks 'id' or 'file_name'")
        if img["id"] not in label_of:
            raise ValueError(f"{path}: images[{i}] (id {img['id']}) has no annotation; add one or drop the image")
        samples.append((img["file_name"], label_of[img["id"]]))
        origins.append(f"{path}: images[{i}]")
    return samples, origins, data["categories"]


def build_inat(
    name: str, root: str, *, year: int, image_root: Optional[str] = None, image_size: int = 224
) -> LTDatasetSplits:
    """iNaturalist `<root>/train{year}.json` and `<root>/val{year}.json` (val is the test split); images under root."""
    files = [f"train{year}.json", f"val{year}.json"]
    require_files(root, files, name, f"The iNaturalist {year} annotation jsons come from the competition release.")
    image_root = root if image_root is None else image_root
    train_samples, train_origins, categories = read_inat_json(os.path.join(root, files[0]))
    test_samples, test_origins, _ = read_inat_json(os.path.join(root, files[1]))
    # Category ids are 0..C-1 in the official files; map sorted ids to contiguous labels so any id set works.
    cat_ids = sorted(c["id"] for c in categories)
    contiguous = {cid: i for i, cid in enumerate(cat_ids)}
    names = {c["id"]: str(c.get("name", c["id"])) for c in categories}

    def relabel(samples, origins):
        out = []
        for (path, cid), origin in zip(samples, origins):
            if cid not in contiguous:
                raise ValueError(f"{origin}: category_id {cid} is not in the categories of {files[0]}")
            out.append((path, contiguous[cid]))
        return out

    train = ImageListDataset(
        image_root,
        relabel(train_samples, train_origins),
        train_origins,
        transform=imagenet_transforms(True, image_size),
    )
    test = ImageListDataset(
        image_root, relabel(test_samples, test_origins), test_origins, transform=imagenet_transforms(False, image_size)
    )
    _check_image_root(name, train)
    return LTDatasetSplits(
        train=train,
        test=test,
        num_classes=len(cat_ids),
        train_counts=_counts(train.targets, len(cat_ids), name),
        class_names=[names[cid] for cid in cat_ids],
        info=dict(name=name, root=os.path.abspath(root), image_root=os.path.abspath(image_root), year=year),
    )
