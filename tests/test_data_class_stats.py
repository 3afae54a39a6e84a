"""Class statistics computed once per training set and read from the metadata everywhere; no generation on a
metadata read; the category-info file; validation once before `launch`."""

from __future__ import annotations

import collections
import json
import os
import sys

import numpy as np
import pytest
from _scripts import load_script

pytest.importorskip("detectron2")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

import lt_detectron.data.registration as registration  # noqa: E402
import lt_detectron.data.stats as stats  # noqa: E402
import lt_detectron.data.validation as validation  # noqa: E402
from lt_detectron.data import (  # noqa: E402
    class_counts,
    dataset_class_stats,
    generate_lt_shapes,
    lvis_json_class_stats,
    register_lt_shapes,
)
from lt_detectron.data.lt_shapes import is_complete  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATASETS.TEST",
    "()",
]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_shapes_stats") / "lt_shapes"
    generate_lt_shapes(str(root), seed=1, num_train_images=60, num_val_images=8)
    yield str(root)
    register_lt_shapes()


@pytest.fixture
def counted(monkeypatch):
    """Count dataset-dict loads, annotation-json loads and class-statistics computations."""
    calls = collections.Counter()

    def wrap(module, name, key):
        original = getattr(module, name)

        def counting(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    wrap(registration, "load_lvis_json", "dataset_loads")  # what DatasetCatalog.get("lt_shapes_*") runs
    wrap(validation, "load_annotation_json", "json_loads")
    wrap(stats, "class_stats_from_records", "stats_computed")
    wrap(stats, "class_stats_from_lvis_dict", "stats_computed")
    return calls


def _load_train_net():
    return load_script("tools/train_net.py", "lt_tools_train_net_stats")


@pytest.mark.parametrize("config", ["lt_shapes_lda.yaml", "lt_shapes_meta.yaml"])
def test_train_net_start_up_counts_each_training_set_once(tiny_root, tmp_path, monkeypatch, counted, config):
    """tools/train_net.py up to the first iteration: validation and counting before `launch`, then model (predictor
    counts), data loader, meta hook and fed weights read the metadata; each dataset's dicts are loaded once."""
    train_net = _load_train_net()
    stopped = {}
    monkeypatch.setattr(train_net.LTTrainer, "train", lambda self: stopped.setdefault("trainer", self))
    argv = ["train_net.py", "--config-file", os.path.join(REPO, "configs", "demo", config)]
    argv += [*TINY, "DATASETS.LT_SHAPES_DIR", tiny_root, "OUTPUT_DIR", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    train_net.invoke_main()
    trainer = stopped["trainer"]
    assert os.path.isfile(tmp_path / "class_stats.json")  # for workers of a multi-process launch

    # Every other reader afterwards: no new load, no new count.
    from lt_detectron.modeling.class_counts import read_class_counts

    before = dict(counted)
    read_class_counts(trainer.cfg)
    class_counts(trainer.cfg.DATASETS.TRAIN, "image_count")
    assert (
        len(MetadataCatalog.get(trainer.cfg.DATASETS.TRAIN[0]).class_image_count)
        == trainer.cfg.MODEL.ROI_HEADS.NUM_CLASSES
    )
    assert dict(counted) == before

    assert counted["json_loads"] == 1  # lt_shapes_train's json: validated and counted from one load
    if config == "lt_shapes_lda.yaml":
        # The train loader's load is the only one: the predictor read the statistics from the metadata.
        assert counted == {"json_loads": 1, "dataset_loads": 1, "stats_computed": 1}
    else:
        # Meta-weighting: the held-out split is loaded once (train loader and dev set share it) and counted once.
        assert counted == {"json_loads": 1, "dataset_loads": 1, "stats_computed": 2}
        assert trainer.cfg.DATASETS.TRAIN[0].endswith("__meta_train")
        full = dataset_class_stats("lt_shapes_train")["instance_count"]
        split = dataset_class_stats(trainer.cfg.DATASETS.TRAIN[0])["instance_count"]
        assert split.sum() < full.sum()  # the split's own counts, not copied from the full set


def test_builtin_lvis_start_up_parses_the_training_json_once(tiny_root, tmp_path, monkeypatch, counted):
    """A Detectron2-builtin-style LVIS set (not validated): nothing is read before `launch`; in the training process
    one load of the dataset dicts serves the predictor's counts, the repeat factors and the loader, as stock
    Detectron2's one load serves its loader (issue 21: start-up at stock speed)."""
    name = "lvis_v1_stats_test_train"
    json_file = os.path.join(tiny_root, "lt_shapes_train.json")
    image_root = str(tmp_path / "coco") + os.sep  # the builtin layout; no image is read before the first iteration
    for split in ("train2017", "val2017"):
        os.makedirs(image_root + split)
    reference = lvis_json_class_stats(json_file)
    counted.clear()
    DatasetCatalog.register(name, lambda: registration.load_lvis_json(json_file, image_root, dataset_name=None))
    MetadataCatalog.get(name).set(
        thing_classes=reference["names"], json_file=json_file, image_root=image_root, evaluator_type="lvis"
    )
    try:
        train_net = _load_train_net()
        stopped = {}
        monkeypatch.setattr(train_net.LTTrainer, "train", lambda self: stopped.setdefault("trainer", self))
        argv = ["train_net.py", "--config-file", os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml")]
        argv += [*TINY, "DATASETS.TRAIN", f"('{name}',)", "OUTPUT_DIR", str(tmp_path / "run")]
        argv += ["DATASETS.LT_SHAPES_DIR", tiny_root, "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler"]
        monkeypatch.setattr(sys, "argv", argv)
        train_net.invoke_main()
        assert "trainer" in stopped
        assert counted == {"dataset_loads": 1, "stats_computed": 1}  # no json.load of the file, no second parse
        assert not os.path.exists(tmp_path / "run" / "class_stats.json")  # nothing known before launch to hand on
        got = dataset_class_stats(name)
        for key in ("image_count", "instance_count"):
            np.testing.assert_array_equal(got[key], reference[key])
        assert getattr(DatasetCatalog, "_lt_loaded_once", None) is None  # the shared lists were released
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_dataset_dicts_loaded_once_shares_and_releases():
    from lt_detectron.data import dataset_dicts_loaded_once

    loads = []
    name = "loaded_once_test"
    DatasetCatalog.register(name, lambda: loads.append(1) or [{"image_id": len(loads)}])
    try:
        with dataset_dicts_loaded_once() as cache:
            first = DatasetCatalog.get(name)
            with dataset_dicts_loaded_once() as inner:  # nested: the same cache
                assert inner is cache and DatasetCatalog.get(name) is first
            assert DatasetCatalog.get(name) is first and len(loads) == 1
        assert not cache and DatasetCatalog.get(name) is not first and len(loads) == 2  # outside: stock behaviour
    finally:
        DatasetCatalog.remove(name)


def test_workers_attach_the_launchers_statistics_without_counting(tiny_root, tmp_path, counted):
    from detectron2.engine import default_argument_parser

    from lt_detectron.engine import prepare_launch, setup_cfg

    config = os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml")
    args = default_argument_parser().parse_args(
        ["--config-file", config, *TINY, "DATASETS.LT_SHAPES_DIR", tiny_root, "OUTPUT_DIR", str(tmp_path)]
    )
    args.class_stats_file = prepare_launch(args)
    expected = dataset_class_stats("lt_shapes_train")
    register_lt_shapes(tiny_root)  # what a spawned worker starts from: fresh metadata
    counted.clear()
    setup_cfg(args)
    got = dataset_class_stats("lt_shapes_train")
    assert not counted  # nothing loaded, validated or counted in the worker
    for key in ("image_count", "instance_count"):
        np.testing.assert_array_equal(got[key], expected[key])


def test_reading_metadata_does_not_generate(tmp_path):
    root = tmp_path / "never_generated"
    register_lt_shapes(root)
    try:
        meta = MetadataCatalog.get("lt_shapes_train")
        assert meta.json_file == os.path.join(str(root), "lt_shapes_train.json")
        assert meta.get("json_file") and meta.as_dict()["dataset_root"] == str(root)
        assert not os.path.exists(root) and not is_complete(root)
    finally:
        register_lt_shapes()


def test_ensure_datasets_and_first_use_generate(tmp_path):
    from lt_detectron.data import ensure_datasets

    root = tmp_path / "generated"
    register_lt_shapes(root)
    try:
        ensure_datasets(["lt_shapes_val", "coco_2017_train"])  # other names: nothing to do
        assert is_complete(root)
    finally:
        register_lt_shapes()


def test_category_info_file_replaces_counting(tiny_root, tmp_path, counted):
    """A CAT_FREQ_PATH-style file (CenterNet2, Detic): the dataset is never loaded for its statistics."""
    json_file = os.path.join(tiny_root, "lt_shapes_train.json")
    info = tmp_path / "cat_info.json"
    stats.main([json_file, "--out", str(info)])
    cats = json.loads(info.read_text())
    reference = lvis_json_class_stats(json_file)
    assert [c["instance_count"] for c in cats] == reference["instance_count"].tolist()
    counted.clear()

    name = "stats_test_with_cat_info"
    DatasetCatalog.register(name, lambda: pytest.fail("the dataset must not be loaded"))
    MetadataCatalog.get(name).set(thing_classes=reference["names"], cat_info_file=str(info))
    try:
        np.testing.assert_array_equal(class_counts(name, "image_count"), reference["image_count"])
        np.testing.assert_array_equal(class_counts(name), reference["instance_count"])
        assert MetadataCatalog.get(name).class_image_count[0] == {"id": 1, "image_count": cats[0]["image_count"]}
        assert not counted
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_category_info_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": 1, "image_count": 3}]))
    with pytest.raises(ValueError, match="bad.json.*instance_count"):
        stats.read_cat_info(bad)
    bad.write_text(json.dumps([{"id": 2, "image_count": 3, "instance_count": 4}]))
    with pytest.raises(ValueError, match="ids must be 1..1"):
        stats.read_cat_info(bad)


def test_records_and_lvis_dict_counts_agree():
    data = {
        "categories": [{"id": i} for i in (1, 2, 3)],
        "annotations": [
            {"image_id": 10, "category_id": 1},
            {"image_id": 10, "category_id": 1},
            {"image_id": 11, "category_id": 3},
            {"image_id": 12, "category_id": 1},
        ],
    }
    records = [
        {"image_id": 10, "annotations": [{"category_id": 0}, {"category_id": 0}]},
        {"image_id": 11, "annotations": [{"category_id": 2}]},
        {"image_id": 12, "annotations": [{"category_id": 0}]},
        {"image_id": 13, "annotations": []},
    ]
    a = stats.class_stats_from_lvis_dict(data, "x")
    b = stats.class_stats_from_records(records, 3, "x")
    for key, expected in (("image_count", [2, 0, 1]), ("instance_count", [3, 0, 1])):
        np.testing.assert_array_equal(a[key], expected)
        np.testing.assert_array_equal(b[key], expected)
    with pytest.raises(ValueError, match="category_id 5"):
        stats.class_stats_from_records([{"image_id": 1, "annotations": [{"category_id": 5}]}], 3, "x")


def test_builtin_lvis_is_not_walked_by_auto_validation(tmp_path, monkeypatch):
    name = "lvis_v1_stats_test"
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    (tmp_path / "coco" / "val2017").mkdir()
    json_file = tmp_path / "lvis_v1_train.json"
    json_file.write_text("{}")  # invalid: only a full check notices
    MetadataCatalog.get(name).set(json_file=str(json_file), image_root=str(tmp_path / "coco") + os.sep)
    try:
        validation.check_datasets(name)  # auto: builtin LVIS, files present, not walked
        with pytest.raises(validation.AnnotationError, match="images"):
            validation.check_datasets(name, validate=True)
    finally:
        MetadataCatalog.remove(name)
