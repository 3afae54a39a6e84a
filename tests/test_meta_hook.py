"""MetaWeightingHook on a tiny Detectron2 Mask R-CNN (CPU): dev split, finite training, plot, checkpoint/resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from PIL import Image  # noqa: E402

from lt_detectron.engine import LTTrainer, build_cfg, prepare_meta_datasets, register_lt_components  # noqa: E402
from lt_detectron.engine.meta_hook import EPS_PLOT_NAME, MetaWeightingHook  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = [(230, 40, 40), (40, 230, 40), (40, 40, 230)]
IMAGE_CLASSES = [[0], [0], [0], [0, 1], [0], [0, 1], [1], [0], [2, 0], [0], [1, 2], [0]]


def _register_tiny_dataset(root, name: str) -> None:
    """12 images of 64x64 with coloured boxes; class 0 frequent, class 2 in two images."""
    rng = np.random.default_rng(0)
    dicts = []
    for i, classes in enumerate(IMAGE_CLASSES):
        img = np.full((64, 64, 3), 128, np.uint8)
        anns = []
        for j, c in enumerate(classes):
            x0, y0 = int(rng.integers(2, 30)), 4 + 30 * j
            img[y0 : y0 + 24, x0 : x0 + 24] = COLORS[c]
            anns.append({"bbox": [x0, y0, 24, 24], "bbox_mode": 1, "category_id": c})  # XYWH_ABS
        path = os.path.join(root, f"{i}.png")
        Image.fromarray(img).save(path)
        dicts.append({"file_name": path, "image_id": i, "height": 64, "width": 64, "annotations": anns})
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["red", "green", "blue"])


# The trainer tools/train_net.py uses (LTTrainer = MetaWeightingTrainerMixin + DefaultTrainer + LVIS evaluation).
_Trainer = LTTrainer


def _cfg(tmp_path, name: str, max_iter: int, image_size: int = 128, **meta):
    register_lt_components()
    cfg = build_cfg(os.path.join(REPO, "configs", "demo", "lt_shapes_base.yaml"))
    cfg.merge_from_list(
        [
            "MODEL.MASK_ON",
            False,
            "MODEL.ROI_HEADS.NUM_CLASSES",
            3,
            "MODEL.ROI_HEADS.NAME",
            "LTROIHeads",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            32,
            "MODEL.RPN.POST_NMS_TOPK_TRAIN",
            50,
            "INPUT.MIN_SIZE_TRAIN",
            (image_size,),
            "INPUT.MAX_SIZE_TRAIN",
            image_size,
            "INPUT.MIN_SIZE_TEST",
            image_size,
            "INPUT.MAX_SIZE_TEST",
            image_size,
            "DATASETS.TRAIN",
            (name,),
            "DATASETS.TEST",
            (),
            "DATALOADER.NUM_WORKERS",
            0,
            "DATALOADER.SAMPLER_TRAIN",
            "TrainingSampler",
            "SOLVER.IMS_PER_BATCH",
            2,
            "SOLVER.MAX_ITER",
            max_iter,
            "SOLVER.WARMUP_ITERS",
            0,
            "SOLVER.STEPS",
            (),
            "SOLVER.CHECKPOINT_PERIOD",
            3,
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "MODEL.LT.META.ENABLED",
            True,
            "MODEL.LT.META.DEV_PER_CLASS",
            1,
            "MODEL.LT.META.LOG_PERIOD",
            1,
        ]
    )
    for key, value in meta.items():
        cfg.merge_from_list([f"MODEL.LT.META.{key}", value])
    return cfg


def test_prepare_meta_datasets_holds_out_a_balanced_dev_split(tmp_path):
    name = "meta_hook_tiny_split"
    _register_tiny_dataset(tmp_path, name)
    cfg = _cfg(tmp_path, name, max_iter=1, image_size=64)
    prepared = prepare_meta_datasets(cfg)
    train = DatasetCatalog.get(prepared.DATASETS.TRAIN[0])
    dev = DatasetCatalog.get(prepared.MODEL.LT.META.DEV_DATASETS[0])
    train_ids, dev_ids = {d["image_id"] for d in train}, {d["image_id"] for d in dev}
    assert not train_ids & dev_ids and len(train_ids | dev_ids) == len(IMAGE_CLASSES)
    for c in range(3):  # every class has a dev image and keeps a training image
        assert any(c == a["category_id"] for d in dev for a in d["annotations"])
        assert any(c == a["category_id"] for d in train for a in d["annotations"])
    assert MetadataCatalog.get(prepared.DATASETS.TRAIN[0]).thing_classes == ["red", "green", "blue"]
    assert prepare_meta_datasets(prepared) is prepared  # idempotent
    assert cfg.DATASETS.TRAIN == (name,)  # the input cfg is left alone


@pytest.fixture(scope="module")
def tiny_lt_shapes(tmp_path_factory):
    """A 60-image lt_shapes (the demo's synthetic LVIS-format data) registered under test-only names."""
    from detectron2.data.datasets.lvis import load_lvis_json

    from lt_detectron.data import generate_lt_shapes
    from lt_detectron.data.lt_shapes import category_names

    root = tmp_path_factory.mktemp("lt_shapes_meta")
    generate_lt_shapes(root, seed=0, num_train_images=60, num_val_images=10)
    name = "meta_hook_lt_shapes_train"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    json_file, image_root = str(root / "lt_shapes_train.json"), str(root / "images") + os.sep
    DatasetCatalog.register(name, lambda: load_lvis_json(json_file, image_root, None))
    MetadataCatalog.get(name).set(thing_classes=category_names())
    return name


def test_meta_training_on_lt_shapes_finite_losses_plot_and_resume(tmp_path, tiny_lt_shapes):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, tiny_lt_shapes, max_iter=4, START_ITER=1, EPS_LR=100.0, INNER_LR=0.0)
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", 30])
    trainer = _Trainer(cfg)
    hook = next(h for h in trainer._hooks if isinstance(h, MetaWeightingHook))
    trainer.resume_or_load(resume=False)
    trainer.train()

    out = cfg.OUTPUT_DIR
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    assert metrics and all(np.isfinite(m["total_loss"]) for m in metrics if "total_loss" in m)
    assert any(m.get("meta/eps_abs_mean", 0) > 0 for m in metrics)
    assert hook.reweighter.meta_steps == 3  # iterations 1, 2, 3; iteration 0 is stage 1
    assert hook.reweighter.inner_lr == trainer.optimizer.param_groups[0]["lr"] > 0  # INNER_LR 0: eta follows lr
    assert os.path.getsize(os.path.join(out, EPS_PLOT_NAME)) > 0
    history = json.load(open(os.path.join(out, "meta_eps.json")))
    assert history["iterations"] == [1, 2, 3] and len(history["groups"]) == 30

    # Resume from the checkpoint written after iteration 2: schedule position and eps state come back.
    ckpt = os.path.join(out, "model_0000002.pth")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["trainer"]["hooks"]["MetaWeightingHook"]
    resumed = _Trainer(cfg)
    resumed.checkpointer.load(ckpt)
    assert resumed.iter == 2
    rhook = next(h for h in resumed._hooks if isinstance(h, MetaWeightingHook))
    assert rhook.reweighter.meta_steps == 2 and saved["reweighter"]["meta_steps"] == 2
    assert rhook.dev_sampler.state_dict() == saved["dev_sampler"]
    assert rhook.dev_sampler.position > 0 or rhook.dev_sampler.epoch > 0
    assert rhook.reweighter.tracker.history()[0].tolist() == [1, 2]
    # The hook hands the ROI heads their re-weighter and takes it back after training.
    assert rhook.roi_heads.roi_reweighter is rhook.step and trainer.model.roi_heads.roi_reweighter is None


def test_hook_config_checks_and_start_at_first_lr_decay(tmp_path):
    name = "meta_hook_tiny_errors"
    _register_tiny_dataset(tmp_path, name)
    cfg = prepare_meta_datasets(_cfg(tmp_path, name, max_iter=1, image_size=64))
    from detectron2.modeling import build_model

    cfg.defrost()
    cfg.MODEL.LT.BOX_CLASSIFIER = "lda"  # a batch-level classification loss
    with pytest.raises(ValueError, match="per_example is False"):
        MetaWeightingHook(cfg, build_model(cfg))
    cfg.MODEL.LT.BOX_CLASSIFIER = "softmax"
    cfg.MODEL.LT.META.START_ITER = -1  # negative: the meta stage starts at the first lr decay
    cfg.SOLVER.STEPS = (7, 9)
    assert MetaWeightingHook(cfg, build_model(cfg)).reweighter.start_iter == 7
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"  # no roi_reweighter to ask
    with pytest.raises(TypeError, match="LTROIHeads"):
        MetaWeightingHook(cfg, build_model(cfg))
    cfg.MODEL.LT.META.MODE = "full"
    with pytest.raises(ValueError, match="MODE"):
        MetaWeightingHook(cfg, build_model(cfg))


def test_meta_step_composes_with_per_roi_box_classifiers(tmp_path):
    """One meta iteration with each per-RoI LT box classifier: its classification loss is weighted, finite."""
    name = "meta_hook_tiny_classifiers"
    _register_tiny_dataset(tmp_path, name)
    for classifier in ("focal", "ldam", "balanced_softmax", "lade", "seesaw"):
        torch.manual_seed(0)
        cfg = _cfg(tmp_path / classifier, name, max_iter=1, image_size=64, EPS_LR=10.0)
        cfg.merge_from_list(["MODEL.LT.BOX_CLASSIFIER", classifier])
        trainer = _Trainer(cfg)
        hook = next(h for h in trainer._hooks if isinstance(h, MetaWeightingHook))
        trainer.resume_or_load(resume=False)
        trainer.train()
        metrics = [json.loads(line) for line in open(os.path.join(cfg.OUTPUT_DIR, "metrics.json"))]
        assert hook.reweighter.meta_steps == 1, classifier
        loss_cls = [v for k, v in metrics[-1].items() if k.startswith("loss_cls")]
        assert loss_cls and np.isfinite(loss_cls).all() and "meta/dev_loss" in metrics[-1], classifier
