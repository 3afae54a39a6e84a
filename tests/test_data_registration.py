"""lt_shapes registration in Detectron2's catalogs, generation on first use, class statistics and repeat factors."""

import functools
import json
import math
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import get_fed_loss_cls_weights
from detectron2.data.samplers import RepeatFactorTrainingSampler

import lt_detectron.data as lt_data
from lt_detectron.data import class_counts, frequency_groups, generate_lt_shapes, register_lt_shapes, registration
from lt_detectron.data.lt_shapes import LTShapesSpec, category_names, plan_lt_shapes

SMALL = dict(num_train_images=24, num_val_images=8)


@pytest.fixture
def small_registered(tmp_path_factory):
    """lt_shapes_* re-registered on a small pre-generated set; the default registration is restored afterwards."""
    root = tmp_path_factory.mktemp("registered") / "lt_shapes"
    generate_lt_shapes(root, seed=5, **SMALL)
    yield str(register_lt_shapes(root))
    register_lt_shapes()


def test_importing_registers_both_splits_without_generating():
    assert {"lt_shapes_train", "lt_shapes_val"} <= set(DatasetCatalog.list())
    meta = MetadataCatalog.get("lt_shapes_val").as_dict()  # as_dict reads nothing lazily
    assert meta["evaluator_type"] == "lvis"
    assert meta["thing_classes"] == category_names()
    assert meta["json_file"] == os.path.join(meta["dataset_root"], "lt_shapes_val.json")
    assert meta["image_root"] == os.path.join(meta["dataset_root"], "images") + os.sep
    assert "thing_dataset_id_to_contiguous_id" not in meta  # LVISEvaluator then maps ids back as id + 1


def test_registered_dicts_and_metadata(small_registered):
    root = small_registered
    train = DatasetCatalog.get("lt_shapes_train")
    assert len(train) == SMALL["num_train_images"]
    assert all(os.path.isfile(d["file_name"]) for d in train)
    assert train[0]["file_name"].startswith(os.path.join(root, "images", "train") + os.sep)
    num_classes = len(category_names())
    assert {a["category_id"] for d in train for a in d["annotations"]} <= set(range(num_classes))

    meta = MetadataCatalog.get("lt_shapes_train")
    assert meta.json_file == os.path.join(root, "lt_shapes_train.json")
    with open(meta.json_file) as f:
        stored = {c["id"]: c for c in json.load(f)["categories"]}
    assert meta.class_image_count == [{"id": i, "image_count": stored[i]["image_count"]} for i in sorted(stored)]
    # Val metadata points at the same train statistics (fed loss / class weights never read val counts).
    assert MetadataCatalog.get("lt_shapes_val").class_image_count == meta.class_image_count
    lt_data.check_datasets(["lt_shapes_train", "lt_shapes_val"])  # what a trainer calls before building the model
    # ... in the form Detectron2's federated loss reads.
    fed_weights = get_fed_loss_cls_weights(["lt_shapes_train", "lt_shapes_val"], freq_weight_power=1.0)
    np.testing.assert_array_equal(fed_weights.numpy(), [stored[i]["image_count"] for i in sorted(stored)])


def test_class_counts_match_the_json_statistics(small_registered):
    with open(MetadataCatalog.get("lt_shapes_train").json_file) as f:
        cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    image_counts = class_counts(["lt_shapes_train"], source="image_count")
    instance_counts = class_counts("lt_shapes_train")  # default: instance_count
    np.testing.assert_array_equal(image_counts, [c["image_count"] for c in cats])
    np.testing.assert_array_equal(instance_counts, [c["instance_count"] for c in cats])
    assert (instance_counts >= image_counts).all()
    np.testing.assert_array_equal(frequency_groups(image_counts), [c["frequency"] for c in cats])
    np.testing.assert_array_equal(class_counts(["lt_shapes_train", "lt_shapes_train"], "image_count"), 2 * image_counts)
    with pytest.raises(ValueError, match="source"):
        class_counts("lt_shapes_train", source="images")


def test_frequency_groups_use_the_lvis_boundaries():
    np.testing.assert_array_equal(frequency_groups([1, 10, 11, 100, 101, 5000]), ["r", "r", "c", "c", "f", "f"])


def test_first_use_generates_into_the_registered_root(tmp_path, monkeypatch):
    # A small spec keeps the test fast; the default (1500 images) is what users get.
    monkeypatch.setattr(registration, "generate_lt_shapes", functools.partial(generate_lt_shapes, **SMALL))
    root = tmp_path / "cache"
    try:
        register_lt_shapes(root)
        assert not root.exists(), "registration alone must not generate"
        assert len(DatasetCatalog.get("lt_shapes_val")) == SMALL["num_val_images"]
        assert (root / "lt_shapes_train.json").is_file() and (root / "images" / "val").is_dir()
    finally:
        register_lt_shapes()


def test_env_var_overrides_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LT_SHAPES_DIR", str(tmp_path / "elsewhere"))
    assert lt_data.default_lt_shapes_root() == str(tmp_path / "elsewhere")
    monkeypatch.delenv("LT_SHAPES_DIR")
    assert lt_data.default_lt_shapes_root().endswith(os.path.join(".cache", "lt_detectron", "lt_shapes"))


def test_repeat_factors_favour_images_with_rare_classes():
    """Detectron2's RFS on the default train layout (t = 0.001, Gupta et al. 2019):
    r(I) = max_c max(1, sqrt(t / f(c)))."""
    plan = plan_lt_shapes(LTShapesSpec())
    dicts = [{"annotations": [{"category_id": c} for c in classes]} for classes in plan["train"]]
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, repeat_thresh=0.001)

    image_counts = plan["train_image_counts"]
    groups = frequency_groups(image_counts)
    num_images = len(dicts)
    rarest = int(np.argmin(image_counts))
    with_rarest = next(i for i, classes in enumerate(plan["train"]) if rarest in classes)
    only_frequent = next(i for i, classes in enumerate(plan["train"]) if all(groups[c] == "f" for c in classes))

    expected = max(max(1.0, math.sqrt(0.001 / (image_counts[c] / num_images))) for c in set(plan["train"][with_rarest]))
    assert float(factors[with_rarest]) == pytest.approx(expected)
    assert float(factors[only_frequent]) == 1.0
    assert factors[with_rarest] > factors[only_frequent]
