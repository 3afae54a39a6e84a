"""The real-LVIS path: a tiny hand-written LVIS v1 json with images is read exactly like lt_shapes (image counts,
instance counts, r/c/f), and missing LVIS folders give an error naming the path and how to get LVIS."""

import json
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis import load_lvis_json
from lvis import LVIS

from lt_detectron.data import (
    check_datasets,
    check_lvis_available,
    class_counts,
    frequency_groups,
    generate_lt_shapes,
    lvis_json_class_stats,
)

# category -> number of images it is annotated in (two instances per image for "b"): one LVIS group each.
IMAGES_PER_CLASS = {"a": 101, "b": 11, "c": 2}
EXPECTED_IMAGES = np.array([101, 11, 2])
EXPECTED_INSTANCES = np.array([101, 22, 2])


def _write_tiny_lvis(root) -> str:
    """LVIS v1 layout: root/lvis/tiny_train.json, images under root/coco/train2017 (found via coco_url)."""
    (root / "lvis").mkdir(parents=True)
    (root / "coco" / "train2017").mkdir(parents=True)
    (root / "coco" / "val2017").mkdir()
    pixel = np.zeros((16, 16, 3), np.uint8)
    images, annotations = [], []
    for image_id in range(1, 102):
        cv2.imwrite(str(root / "coco" / "train2017" / f"{image_id:012d}.jpg"), pixel)
        images.append(
            {
                "id": image_id,
                "width": 16,
                "height": 16,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
                "coco_url": f"http://images.cocodataset.org/train2017/{image_id:012d}.jpg",
            }
        )
    box = {"bbox": [1.0, 1.0, 4.0, 4.0], "area": 16.0, "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0]]}
    for cat_id, (name, n_images) in enumerate(IMAGES_PER_CLASS.items(), start=1):
        for image_id in range(1, n_images + 1):
            for _ in range(2 if name == "b" else 1):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat_id, **box})
    # Stale stored counts on purpose: statistics must come from the annotations.
    categories = [
        {
            "id": i,
            "name": n,
            "synonyms": [n],
            "def": "",
            "synset": f"{n}.n.01",
            "frequency": "f",
            "image_count": 0,
            "instance_count": 0,
        }
        for i, n in enumerate(IMAGES_PER_CLASS, start=1)
    ]
    path = root / "lvis" / "tiny_train.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


@pytest.fixture
def tiny_lvis(tmp_path):
    json_file = _write_tiny_lvis(tmp_path)
    name = "lvis_tiny_test_train"
    image_root = str(tmp_path / "coco") + os.sep  # as Detectron2's builtin LVIS registration: "<root>/coco/"
    DatasetCatalog.register(name, lambda: load_lvis_json(json_file, image_root, dataset_name=None))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="lvis", thing_classes=list(IMAGES_PER_CLASS)
    )
    yield name, json_file
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_stats_from_the_json_and_from_the_registered_dataset_agree(tiny_lvis):
    name, json_file = tiny_lvis
    stats = lvis_json_class_stats(json_file)
    assert stats["names"] == list(IMAGES_PER_CLASS)
    np.testing.assert_array_equal(stats["image_count"], EXPECTED_IMAGES)
    np.testing.assert_array_equal(stats["instance_count"], EXPECTED_INSTANCES)
    np.testing.assert_array_equal(stats["frequency"], ["f", "c", "r"])
    np.testing.assert_array_equal(class_counts(name, "image_count"), EXPECTED_IMAGES)
    np.testing.assert_array_equal(class_counts(name, "instance_count"), EXPECTED_INSTANCES)
    assert all(os.path.isfile(d["file_name"]) for d in DatasetCatalog.get(name))
    check_datasets([name])  # folders present, json valid


def test_lt_shapes_json_is_read_the_same_way(tmp_path):
    """The same function on the synthetic train json reproduces the statistics stored in it by the generator."""
    root = tmp_path / "lt_shapes"
    generate_lt_shapes(root, seed=2, num_train_images=20, num_val_images=8)
    stats = lvis_json_class_stats(root / "lt_shapes_train.json")
    cats = sorted(LVIS(str(root / "lt_shapes_train.json")).dataset["categories"], key=lambda c: c["id"])
    np.testing.assert_array_equal(stats["image_count"], [c["image_count"] for c in cats])
    np.testing.assert_array_equal(stats["instance_count"], [c["instance_count"] for c in cats])
    np.testing.assert_array_equal(stats["frequency"], [c["frequency"] for c in cats])
    np.testing.assert_array_equal(frequency_groups(stats["image_count"]), stats["frequency"])


def test_missing_lvis_names_the_path_and_how_to_get_it(tmp_path):
    name = "lvis_v1_missing_test"
    MetadataCatalog.get(name).set(
        json_file=str(tmp_path / "lvis" / "lvis_v1_train.json"), image_root=str(tmp_path / "coco") + os.sep
    )
    try:
        with pytest.raises(FileNotFoundError) as info:
            check_lvis_available(name)
        message = str(info.value)
        assert str(tmp_path / "lvis" / "lvis_v1_train.json") in message
        assert "lvisdataset.org" in message and "DETECTRON2_DATASETS" in message and "train2017" in message
        # Annotations present but no COCO images: the image folder is named.
        (tmp_path / "lvis").mkdir()
        (tmp_path / "lvis" / "lvis_v1_train.json").write_text("{}")
        with pytest.raises(FileNotFoundError, match=str(tmp_path / "coco")):
            check_datasets(name)
    finally:
        MetadataCatalog.remove(name)


def test_builtin_lvis_v1_is_registered_by_detectron2():
    """Our configs name these; the error above is what a user without $DETECTRON2_DATASETS/lvis sees."""
    for name in ("lvis_v1_train", "lvis_v1_val"):
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "lvis" and meta.json_file.endswith(f"lvis/{name}.json")
        assert meta.image_root.endswith("coco/")
