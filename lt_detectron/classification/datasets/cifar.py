"""CIFAR-10-LT / CIFAR-100-LT from the standard CIFAR python archives on disk (torchvision's loaders, no download).

Layout: the official archives (https://www.cs.toronto.edu/~kriz/cifar.html) extracted into the dataset root
(DATASET.ROOT, else $LT_DATASETS, else ./datasets), e.g. `tar -xzf cifar-10-python.tar.gz -C <root>`:

    <root>/cifar-10-batches-py/{data_batch_1, ..., data_batch_5, test_batch, batches.meta}   cifar-10-python.tar.gz
    <root>/cifar-100-python/{train, test, meta}                                            cifar-100-python.tar.gz

Before anything is loaded the files are checked: a missing one, one whose md5 differs from the official archive's
(`verify_md5=True`, the default; DATASET.ARGS.VERIFY_MD5 False skips it for re-pickled copies), and one that is not a
CIFAR python pickle each raise an error naming the file, what is wrong and the fix (a user error: the CLI prints it
in one screen).
The training set keeps n_c = floor(n_max * (1/IF)^(c/(C-1))) images of class c (a seeded choice); test is unchanged.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import torchvision
from torchvision import transforms as T

from lt_detectron.utils.cli import UserError, UserFileNotFoundError
from lt_detectron.utils.io import file_digest

from .base import LTDatasetSplits, long_tail_counts

__all__ = ["build_cifar_lt", "cifar_transforms", "CifarDataError"]

_MEAN_STD = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"
PIXELS = 3 * 32 * 32  # one row of a batch's "data" array


class CifarDataError(UserError, ValueError):
    """CIFAR files that fail the md5 check, are not CIFAR python pickles, or hold too few images; the message names
    the file, what is wrong and the fix."""


def _without_md5(file_list: list) -> list:
    # torchvision's check_integrity(path, md5=None) only checks that the file exists.
    return [(name, None) for name, _ in file_list]


class _CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 without its own md5 check: `build_cifar_lt` checks the files first (torchvision's
    message names no file and suggests a download this project does not do), so each file is hashed once."""

    def __init__(self, root: str, train: bool, transform):
        self.train_list = _without_md5(type(self).train_list)
        self.test_list = _without_md5(type(self).test_list)
        self.meta = {**type(self).meta, "md5": None}
        super().__init__(root, train=train, transform=transform, download=False)


class _CIFAR100(torchvision.datasets.CIFAR100, _CIFAR10):
    """CIFAR100 likewise (MRO: CIFAR100's file lists, _CIFAR10's __init__)."""


def cifar_transforms(num_classes: int, train: bool, augment: bool = True) -> T.Compose:
    """Standard CIFAR pipeline: random crop 32 (pad 4) + horizontal flip for training, then normalise."""
    mean, std = _MEAN_STD[num_classes]
    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if (train and augment) else []
    return T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])


class _Layout:
    """Where one CIFAR variant's files live under `root`, their official md5s, and the fix to say on an error."""

    def __init__(self, num_classes: int, root: str):
        self.num_classes = num_classes
        self.cls = _CIFAR10 if num_classes == 10 else _CIFAR100
        base = torchvision.datasets.CIFAR10 if num_classes == 10 else torchvision.datasets.CIFAR100
        self.name = f"cifar{num_classes}_lt"
        self.archive = "cifar-10-python.tar.gz" if num_classes == 10 else "cifar-100-python.tar.gz"
        self.root = os.path.abspath(root)
        self.folder = os.path.join(self.root, base.base_folder)
        # (file name, official md5, what it holds): the training batches, the test batch, the class names
        self.files = [(n, md5, "batch") for n, md5 in base.train_list + base.test_list]
        self.files.append((base.meta["filename"], base.meta["md5"], "meta"))
        self.meta_key = base.meta["key"]
        self.labels_key = "labels" if num_classes == 10 else "fine_labels"

    def path(self, file: str) -> str:
        return os.path.join(self.folder, file)

    def fix(self) -> str:
        names = ", ".join(n for n, _, _ in self.files)
        return (
            f"Fix: extract the official {self.archive} ({SOURCE}) into {self.root} (tar -xzf {self.archive} -C "
            f"{self.root}); it gives {self.folder}/{{{names}}}. Or set DATASET.ROOT (or $LT_DATASETS) to the folder "
            f"that holds {os.path.basename(self.folder)}/. Nothing is downloaded."
        )


def _md5(path: str) -> str:
    return file_digest(path, "md5")


def _check_files(layout: _Layout, verify_md5: bool) -> None:
    """Raise naming the folder / file when a file is missing or (with `verify_md5`) not the official archive's."""
    missing = [n for n, _, _ in layout.files if not os.path.isfile(layout.path(n))]
    if missing:
        what = (
            f"folder {layout.folder} does not exist"
            if not os.path.isdir(layout.folder)
            else f"{layout.folder} lacks {', '.join(missing)}"
        )
        raise UserFileNotFoundError(f"{layout.name}: {what}.\n  {layout.fix()}")
    if not verify_md5:
        return
    bad = [(n, got, md5) for n, md5, _ in layout.files if (got := _md5(layout.path(n))) != md5]
    if bad:
        first, got, want = bad[0]
        also = "".join(f"\n  Also failing: {n} (md5 {g}, expected {w})." for n, g, w in bad[1:])
        raise CifarDataError(
            f"{layout.name}: {layout.path(first)} fails the md5 check: md5 {got}, expected {want} (the file in the "
            f"official {layout.archive}).{also}\n  A file that fails is truncated (an interrupted copy or extraction), "
            f"altered, or not from the official archive.\n  {layout.fix()}\n  Files in the CIFAR format made another "
            "way (re-pickled copies): DATASET.ARGS.VERIFY_MD5 False skips the check."
        )


def _content_problem(entry: Any, kind: str, layout: _Layout) -> str | None:
    """What is wrong with an unpickled file for torchvision's CIFAR reader, or None."""
    if not isinstance(entry, dict):
        return f"it holds a {type(entry).__name__}, not a dict"
    if kind == "meta":
        return (
            None
            if layout.meta_key in entry
            else f"it has no {layout.meta_key!r} entry (keys: {sorted(map(str, entry))})"
        )
    labels_key = "labels" if "labels" in entry else layout.labels_key  # torchvision reads "labels" first
    for key in ("data", labels_key):
        if key not in entry:
            return f"it has no {key!r} entry (keys: {sorted(map(str, entry))})"
    labels = entry[labels_key]
    if not isinstance(labels, (list, tuple, np.ndarray)):
        return f"its {labels_key!r} is a {type(labels).__name__}, not a list"
    data = np.asarray(entry["data"])
    if not len(labels) or data.size != len(labels) * PIXELS:
        return f"its 'data' ({data.size} values) is not one {PIXELS}-value row per label ({len(labels)} labels)"
    return None


def _name_the_bad_file(layout: _Layout, err: Exception) -> None:
    """torchvision failed reading the files; raise CifarDataError naming the first one that is not a CIFAR pickle
    of this variant (return when every file reads, so the caller re-raises torchvision's error)."""
    for file, _, kind in layout.files:
        path = layout.path(file)
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")  # torchvision's own reading
        except Exception as bad:
            problem = f"{type(bad).__name__}: {(str(bad).strip().splitlines() or [''])[0]}"
        else:
            problem = _content_problem(entry, kind, layout)
        if problem is not None:
            raise CifarDataError(
                f"{layout.name}: {path} is not a CIFAR-{layout.num_classes} python pickle ({problem}; "
                f"{os.path.getsize(path)} bytes).\n  {layout.fix()}"
            ) from err


def _load_split(layout: _Layout, train: bool, transform) -> Any:
    try:
        return layout.cls(layout.root, train=train, transform=transform)
    except Exception as err:
        _name_the_bad_file(layout, err)
        raise


def build_cifar_lt(
    root: str,
    *,
    num_classes: int = 10,
    imbalance_factor: float = 100,
    seed: int = 0,
    augment: bool = True,
    verify_md5: bool = True,
) -> LTDatasetSplits:
    """Build CIFAR-{10,100}-LT under `root`; `imbalance_factor` = n_max / n_min (1 = the full balanced set).

    `verify_md5=False` accepts files in the right format whose md5 differs from the official archive's (test
    fixtures, re-pickled copies). Missing files raise UserFileNotFoundError, files that fail the md5 check or are not
    CIFAR pickles CifarDataError, each naming the file and the fix.
    """
    if num_classes not in (10, 100):
        raise ValueError(f"CIFAR-LT has 10 or 100 classes, got num_classes={num_classes}")
    layout = _Layout(num_classes, root)
    _check_files(layout, verify_md5)
    train = _load_split(layout, True, cifar_transforms(num_classes, True, augment))
    test = _load_split(layout, False, cifar_transforms(num_classes, False))

    targets = np.asarray(train.targets, dtype=np.int64)
    if targets.size == 0:
        _name_the_bad_file(layout, ValueError("no training images"))
    available = np.bincount(targets, minlength=num_classes)
    n_max = int(available.max())
    train_counts = long_tail_counts(n_max, num_classes, imbalance_factor)
    short = np.flatnonzero(available < train_counts)
    if short.size:
        raise CifarDataError(
            f"{layout.name}: classes {short.tolist()} have fewer training images than the LT profile needs "
            f"({available[short].tolist()} < {train_counts[short].tolist()}); is {layout.folder} complete?\n  "
            f"{layout.fix()}"
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
        info=dict(name=layout.name, root=layout.root, imbalance_factor=imbalance_factor, n_max=n_max, seed=seed),
    )
