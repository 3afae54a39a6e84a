"""Config loading: model-zoo `_BASE_`, the demo base chain, add_lt_config idempotence, overrides, clear errors."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("detectron2")

from detectron2.config import get_cfg  # noqa: E402

from lt_detectron.config import add_lt_config, load_config_dict, merge_config_file  # noqa: E402
from lt_detectron.engine import build_cfg  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LVIS_BASELINE = os.path.join(REPO, "configs", "lvis_baseline.yaml")
DEMO_BASE = os.path.join(REPO, "configs", "demo", "lt_shapes_base.yaml")
DEMO_BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")


def test_lvis_baseline_resolves_model_zoo_base():
    cfg = build_cfg(LVIS_BASELINE)
    # From Detectron2's LVISv1 mask_rcnn_R_50_FPN_1x.yaml and its own Base-RCNN-FPN.yaml base.
    assert cfg.DATASETS.TRAIN == ("lvis_v1_train",)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203
    assert cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    # Ours on top (docs/methods.md#data-and-metrics).
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    assert cfg.DATALOADER.REPEAT_THRESHOLD == pytest.approx(0.001)
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 300
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == pytest.approx(1e-4)
    assert cfg.MODEL.LT.BOX_CLASSIFIER == "softmax"


def test_demo_baseline_inherits_the_shared_base():
    base = load_config_dict(DEMO_BASE)
    cfg = build_cfg(DEMO_BASELINE)
    assert cfg.MODEL.BACKBONE.NAME == base["MODEL"]["BACKBONE"]["NAME"] == "build_narrow_resnet_fpn_backbone"
    assert cfg.SOLVER.MAX_ITER == base["SOLVER"]["MAX_ITER"]
    assert cfg.OUTPUT_DIR == "output/demo_baseline"
    assert cfg.MODEL.WEIGHTS == ""  # from scratch
    assert cfg.DATASETS.TRAIN == ("lt_shapes_train",) and cfg.DATASETS.TEST == ("lt_shapes_val",)
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 300


def test_add_lt_config_is_idempotent_and_overrides_apply():
    cfg = get_cfg()
    add_lt_config(cfg)
    cfg.MODEL.LT.BOX_CLASSIFIER = "lda"
    add_lt_config(cfg)  # must not reset keys already set
    assert cfg.MODEL.LT.BOX_CLASSIFIER == "lda"
    cfg = build_cfg(DEMO_BASELINE, ["MODEL.LT.BOX_CLASSIFIER", "cb", "SOLVER.MAX_ITER", "7"])
    assert cfg.MODEL.LT.BOX_CLASSIFIER == "cb" and cfg.SOLVER.MAX_ITER == 7


def test_relative_base_chain_and_child_overrides(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "parent.yaml").write_text(f'_BASE_: "{DEMO_BASE}"\nSOLVER:\n  BASE_LR: 0.5\n')
    (tmp_path / "sub" / "child.yaml").write_text('_BASE_: "../parent.yaml"\nSOLVER:\n  MAX_ITER: 3\n')
    cfg = build_cfg(str(tmp_path / "sub" / "child.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.MAX_ITER == 3
    assert cfg.SOLVER.IMS_PER_BATCH == load_config_dict(DEMO_BASE)["SOLVER"]["IMS_PER_BATCH"]


def test_missing_config_file_names_the_path(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        build_cfg(missing)


def test_unknown_model_zoo_base_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('_BASE_: "model_zoo://LVISv1-InstanceSegmentation/no_such_config.yaml"\n')
    with pytest.raises(FileNotFoundError, match="bad.yaml.*model-zoo"):
        build_cfg(str(bad))


def test_unknown_key_names_the_file(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("SOLVER:\n  MAX_ITERS: 3\n")
    cfg = get_cfg()
    add_lt_config(cfg)
    with pytest.raises(KeyError, match="typo.yaml.*MAX_ITERS"):
        merge_config_file(cfg, str(bad))


def test_odd_number_of_overrides_is_rejected():
    with pytest.raises(ValueError, match="KEY VALUE"):
        build_cfg(DEMO_BASELINE, ["SOLVER.MAX_ITER"])


def test_unknown_detection_keys_suggest_the_nearest_valid_ones(tmp_path):
    from lt_detectron.engine import build_cfg

    with pytest.raises(KeyError, match=r"unknown config key 'MODEL.LT.LDA.GAMA'. Did you mean MODEL.LT.LDA.GAMMA"):
        build_cfg(os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml"), ["MODEL.LT.LDA.GAMA", "1.0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  MAX_ITERS: 3\n")
    with pytest.raises(KeyError, match=r"Did you mean SOLVER.MAX_ITER\b"):
        build_cfg(str(bad))


def test_a_misspelt_box_classifier_fails_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"'sesaw' is not a known box classifier \(did you mean 'seesaw'\?\)"):
        build_cfg(os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml"), ["MODEL.LT.BOX_CLASSIFIER", "sesaw"])
