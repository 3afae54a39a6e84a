"""Repeat factor sampling as the trainer runs it: the factors equal Detectron2's own on an LVIS-shaped dataset with
images that have no annotations, and start-up logs what the sampling does to an epoch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.structures import BoxMode

from lt_detectron.config import add_lt_config
from lt_detectron.data.stats import repeat_factor_summary
from lt_detectron.engine.resume import build_resumable_train_loader, repeat_factors_of

NUM_CLASSES = 6


def _register(name: str) -> None:
    """80 images: class 0 in most, class 5 in two (rare), every 9th image without annotations."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(80):
        ids = [] if i % 9 == 0 else [int(c) for c in rng.choice([0, 0, 0, 1, 2, 3, 4], size=rng.integers(1, 4))]
        if i in (10, 50):
            ids.append(5)
        annotations = [
            {"bbox": [2.0, 2.0, 10.0, 10.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": 0} for c in ids
        ]
        records.append({"file_name": f"{i}.png", "image_id": i, "height": 32, "width": 32, "annotations": annotations})
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=[f"c{c}" for c in range(NUM_CLASSES)])


@pytest.mark.parametrize("filter_empty", [True, False])
@pytest.mark.parametrize("sqrt", [True, False])
def test_trainer_factors_are_detectron2s_and_startup_logs_them(filter_empty, sqrt, caplog):
    name = "rfs_lvis_shaped"
    _register(name)
    cfg = get_cfg()
    add_lt_config(cfg)
    cfg.DATASETS.TRAIN = (name,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.1
    cfg.DATALOADER.REPEAT_SQRT = sqrt
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = filter_empty
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    with caplog.at_level(logging.INFO, logger="lt_detectron.engine.resume"):
        loader = build_resumable_train_loader(cfg)
    used = repeat_factors_of(loader.resumable_sampler.sampler)
    dicts = get_detection_dataset_dicts([name], filter_empty=filter_empty)
    assert len(used) == len(dicts) == (80 - 9 if filter_empty else 80)
    expected = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.1, sqrt=sqrt)
    torch.testing.assert_close(used, expected)
    assert float(used.max()) > 1.0 and float(used.min()) == 1.0
    summary = repeat_factor_summary(dicts, used.tolist(), NUM_CLASSES)
    assert summary["groups"]["r"]["images"] == 2 and summary["rare_image_share_sampled"] > summary["rare_image_share"]
    assert ("none" in summary["groups"]) is not filter_empty
    message = next(r.getMessage() for r in caplog.records if "repeat factor sampling" in r.getMessage())
    assert f"an epoch draws {summary['effective_epoch_images']:.0f} images for {len(dicts)}" in message
    assert f"sqrt {sqrt}" in message and "images with a rare class" in message
