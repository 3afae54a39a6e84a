"""Classification dataset loaders on tiny files in the real on-disk formats, the CIFAR-LT profile, digits-LT."""

import json
import math
import os
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from lt_detectron.classification.datasets import build_dataset, long_tail_counts
from lt_detectron.classification.datasets.cifar import CifarDataError


# ------------------------------------------------------- the long-tailed profile (docs/methods.md#data-and-metrics)
def test_cifar10_if100_profile_is_the_methods_counts():
    expected = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    by_hand = [math.floor(5000 * (1 / 100) ** (c / 9)) for c in range(10)]
    assert by_hand == expected
    assert long_tail_counts(5000, 10, 100).tolist() == expected


@pytest.mark.parametrize("imbalance_factor", [200, 100, 50, 20, 10, 1])
def test_cifar100_profile_head_tail_and_monotone(imbalance_factor):
    counts = long_tail_counts(500, 100, imbalance_factor)
    assert counts[0] == 500 and counts[-1] == math.floor(500 / imbalance_factor)
    assert (np.diff(counts) <= 0).all()
    assert counts.tolist() == [math.floor(500 * (1 / imbalance_factor) ** (c / 99)) for c in range(100)]


def test_profile_rejects_imbalance_below_one():
    with pytest.raises(ValueError, match="imbalance_factor"):
        long_tail_counts(100, 10, 0.5)


# ---------------------------------------------------------------- CIFAR python archives
def _write_cifar10(root, per_class_train=20, per_class_test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    labels = np.repeat(np.arange(10), per_class_train)
    rng.shuffle(labels)
    for i, chunk in enumerate(np.array_split(labels, 5), start=1):
        data = rng.integers(0, 256, (len(chunk), 3072), dtype=np.uint8)
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": data, "labels": chunk.tolist()}, f)
    test_labels = np.repeat(np.arange(10), per_class_test)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(
            {"data": rng.integers(0, 256, (len(test_labels), 3072), dtype=np.uint8), "labels": test_labels.tolist()}, f
        )
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)]}, f)


def test_cifar10_lt_from_pickles(tmp_path):
    _write_cifar10(tmp_path)
    splits = build_dataset("cifar10_lt", root=str(tmp_path), imbalance_factor=10, verify_md5=False)
    expected = [math.floor(20 * 0.1 ** (c / 9)) for c in range(10)]
    assert splits.train_counts.tolist() == expected
    assert np.bincount(splits.train.targets, minlength=10).tolist() == expected
    assert len(splits.train.data) == sum(expected)
    assert len(splits.test) == 30 and np.bincount(splits.test.targets).tolist() == [3] * 10  # test unchanged
    assert splits.class_names[3] == "class3" and splits.num_classes == 10
    image, label = splits.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and isinstance(label, int)

    again = build_dataset("cifar10_lt", root=str(tmp_path), imbalance_factor=10, verify_md5=False)
    other = build_dataset("cifar10_lt", root=str(tmp_path), imbalance_factor=10, seed=1, verify_md5=False)
    assert np.array_equal(again.train.data, splits.train.data)  # the subset is fixed by the seed
    assert not np.array_equal(other.train.data, splits.train.data)


def test_cifar_md5_is_checked_by_default(tmp_path):
    _write_cifar10(tmp_path)
    # these files are not the real archive's: the first one is named with the official md5 (no download suggested)
    first = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    expected = re.escape(f"{first} fails the md5 check: ") + ".*, expected c99cafc152244af753f735de768cd75f"
    with pytest.raises(CifarDataError, match=expected):
        build_dataset("cifar10_lt", root=str(tmp_path), imbalance_factor=10)


def test_cifar100_lt_from_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 4), ("test", 1)):
        labels = np.repeat(np.arange(100), per_class).tolist()
        with open(folder / split, "wb") as f:
            pickle.dump(
                {
                    "data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
                    "fine_labels": labels,
                    "coarse_labels": [0] * len(labels),
                },
                f,
            )
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    splits = build_dataset("cifar100_lt", root=str(tmp_path), imbalance_factor=4, verify_md5=False)
    assert splits.train_counts[0] == 4 and splits.train_counts[-1] == 1
    assert np.bincount(splits.train.targets, minlength=100).tolist() == splits.train_counts.tolist()
    assert len(splits.test) == 100 and splits.class_names[99] == "c99"


def test_missing_cifar_names_path_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*meta"):
        build_dataset("cifar100_lt", root=str(tmp_path))


# ---------------------------------------------------------------- ImageNet-LT / Places-LT split lists
def _write_jpeg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 10, 3), value, dtype=np.uint8)).save(path, format="JPEG")


def _write_list_dataset(root, prefix, leading_slash=False):
    folder = root / prefix
    lines = {"train": [(0, 3), (1, 2), (2, 1)], "val": [(0, 1), (1, 1), (2, 1)], "test": [(0, 1), (1, 1), (2, 1)]}
    for split, spec in lines.items():
        rows = []
        for label, n in spec:
            for i in range(n):
                rel = f"{split}/n{label:03d}/img_{i}.jpg"
                _write_jpeg(folder / rel, 40 * label)
                rows.append(f"{'/' if leading_slash else ''}{rel} {label}")
        (folder / f"{prefix}_{split}.txt").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize(
    "name,prefix,leading_slash", [("imagenet_lt", "ImageNet_LT", False), ("places_lt", "Places_LT", True)]
)
def test_split_list_dataset(tmp_path, name, prefix, leading_slash):
    _write_list_dataset(tmp_path, prefix, leading_slash)
    splits = build_dataset(name, root=str(tmp_path), image_size=16)
    assert splits.num_classes == 3 and splits.train_counts.tolist() == [3, 2, 1]
    assert len(splits.val) == 3 and len(splits.test) == 3
    image, label = splits.test[2]
    assert image.shape == (3, 16, 16) and label == splits.test.targets[2]


def test_split_list_malformed_line_names_file_and_line(tmp_path):
    folder = _write_list_dataset(tmp_path, "ImageNet_LT")
    listing = folder / "ImageNet_LT_val.txt"
    listing.write_text(listing.read_text() + "val/n000/broken.jpg cat\n")
    with pytest.raises(ValueError, match=r"ImageNet_LT_val\.txt:4: expected"):
        build_dataset("imagenet_lt", root=str(tmp_path))


def test_split_list_missing_image_names_its_line(tmp_path):
    folder = _write_list_dataset(tmp_path, "ImageNet_LT")
    os.remove(folder / "test/n001/img_0.jpg")
    splits = build_dataset("imagenet_lt", root=str(tmp_path), image_size=16)
    with pytest.raises(FileNotFoundError, match=r"ImageNet_LT_test\.txt:2"):
        splits.test[1]


def test_split_list_label_out_of_range(tmp_path):
    folder = _write_list_dataset(tmp_path, "ImageNet_LT")
    (folder / "ImageNet_LT_test.txt").write_text("test/n000/img_0.jpg 7\n")
    with pytest.raises(ValueError, match=r"ImageNet_LT_test\.txt:1: label 7"):
        build_dataset("imagenet_lt", root=str(tmp_path))


def test_missing_split_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Places_LT_train\.txt"):
        build_dataset("places_lt", root=str(tmp_path))


# ---------------------------------------------------------------- iNaturalist jsons
def _inat_json(path, images):
    """images: list of (file_name, category_id); category ids deliberately not contiguous."""
    data = {
        "images": [{"id": 100 + i, "file_name": f} for i, (f, _) in enumerate(images)],
        "annotations": [{"id": i, "image_id": 100 + i, "category_id": c} for i, (_, c) in enumerate(images)],
        "categories": [{"id": 9, "name": "Bufo"}, {"id": 4, "name": "Aves"}],
    }
    path.write_text(json.dumps(data))


def test_inat_json(tmp_path):
    folder = tmp_path / "iNat2018"
    folder.mkdir()
    train = [("train_val2018/Aves/a0.jpg", 4), ("train_val2018/Aves/a1.jpg", 4), ("train_val2018/Bufo/b0.jpg", 9)]
    for i, (f, _) in enumerate(train):
        _write_jpeg(folder / f, 30 * i)
    _inat_json(folder / "train2018.json", train)
    _inat_json(folder / "val2018.json", [("train_val2018/Bufo/b0.jpg", 9)])
    splits = build_dataset("inat2018", root=str(tmp_path), image_size=8)
    assert splits.class_names == ["Aves", "Bufo"]  # sorted category ids 4, 9 -> labels 0, 1
    assert splits.train_counts.tolist() == [2, 1]
    image, label = splits.test[0]
    assert label == 1 and image.shape == (3, 8, 8)


def test_inat_json_missing_field(tmp_path):
    folder = tmp_path / "iNat2017"
    folder.mkdir()
    (folder / "train2017.json").write_text(json.dumps({"images": [], "categories": []}))
    (folder / "val2017.json").write_text("{}")
    with pytest.raises(ValueError, match=r"train2017\.json: field 'annotations'"):
        build_dataset("inat2017", root=str(tmp_path))


# ---------------------------------------------------------------- digits-LT (real data, bundled with sklearn)
def test_digits_lt_profile_balance_and_determinism():
    splits = build_dataset("digits_lt", imbalance_factor=20, val_per_class=3, n_max=100, seed=0)
    assert splits.train_counts.tolist() == long_tail_counts(100, 10, 20).tolist()
    assert splits.train_counts[0] / splits.train_counts[-1] == 20
    assert np.bincount(splits.train.targets, minlength=10).tolist() == splits.train_counts.tolist()
    assert np.bincount(splits.test.targets).tolist() == [50] * 10
    assert np.bincount(splits.val.targets).tolist() == [3] * 10
    parts = [set(s.source_indices.tolist()) for s in (splits.train, splits.val, splits.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    image, label = splits.train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    same = build_dataset("digits_lt", imbalance_factor=20, val_per_class=3, n_max=100, seed=0)
    other = build_dataset("digits_lt", imbalance_factor=20, val_per_class=3, n_max=100, seed=1)
    assert np.array_equal(same.train.source_indices, splits.train.source_indices)
    assert not np.array_equal(other.train.source_indices, splits.train.source_indices)


def test_digits_lt_too_many_images_requested():
    with pytest.raises(ValueError, match="lower n_max"):
        build_dataset("digits_lt", n_max=170)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="digits_lt.*cifar10_lt.*inat2018"):
        build_dataset("mnist_lt")
