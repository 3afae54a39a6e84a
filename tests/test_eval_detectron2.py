"""Detectron2 integration: on a tiny lt_shapes, FastLVISEvaluator and Detectron2's LVISEvaluator (lvis-api) return the
same metrics (hence the same demo table) on the same predictions; the fast one writes the per-class CSV and plot;
TEST.LT_EVALUATOR picks the backend."""

from __future__ import annotations

import csv
import os

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from _scripts import load_script
from detectron2.evaluation import LVISEvaluator
from detectron2.structures import Boxes, Instances

from lt_detectron.data import generate_lt_shapes, register_lt_shapes
from lt_detectron.data.lt_shapes import VAL_JSON
from lt_detectron.evaluation.detectron2_evaluator import D2_METRICS, FastLVISEvaluator
from lt_detectron.evaluation.inputs import load_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_shapes_eval")
    generate_lt_shapes(str(root), seed=1, overwrite=True, num_train_images=16, num_val_images=10)
    register_lt_shapes(str(root))
    yield str(root)
    register_lt_shapes()  # back to the default root for other tests


def _predictions(root: str, seed: int = 0):
    """Model-like outputs for the val images: shifted copies of the objects (right or wrong class) and noise."""
    gt = load_json(os.path.join(root, VAL_JSON), "val")
    rng = np.random.default_rng(seed)
    num_classes = len(gt["categories"])
    by_image = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    inputs, outputs = [], []
    for img in gt["images"]:
        h, w = img["height"], img["width"]
        boxes, scores, classes, masks = [], [], [], []
        for ann in by_image.get(img["id"], []):
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w)))
            for _ in range(3):
                dx, dy = rng.integers(-3, 4, 2)
                mm = np.roll(np.roll(m, dy, 0), dx, 1)
                ys, xs = np.nonzero(mm)
                if len(xs) == 0:
                    continue
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                masks.append(mm.astype(bool))
                scores.append(float(np.round(rng.uniform(0.05, 1.0), 2)))
                cls = ann["category_id"] - 1 if rng.random() < 0.7 else int(rng.integers(0, num_classes))
                classes.append(cls)
        for _ in range(5):
            x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
            bw, bh = rng.integers(8, 20, 2)
            mm = np.zeros((h, w), dtype=bool)
            mm[y0 : y0 + bh, x0 : x0 + bw] = True
            boxes.append([x0, y0, x0 + bw, y0 + bh])
            masks.append(mm)
            scores.append(float(np.round(rng.uniform(0.0, 0.5), 2)))
            classes.append(int(rng.integers(0, num_classes)))
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(torch.tensor(np.array(boxes, dtype=np.float32)))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
        inst.pred_masks = torch.from_numpy(np.stack(masks))
        inputs.append({"image_id": img["id"], "height": h, "width": w})
        outputs.append({"instances": inst})
    return inputs, outputs


def _run(evaluator, inputs, outputs):
    evaluator.reset()
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()


def _demo_table():
    return load_script("tools/demo.py", "lt_tools_demo").format_lvis_table


def test_fast_and_lvis_api_give_the_same_table(tiny_root, tmp_path):
    inputs, outputs = _predictions(tiny_root)
    fast = FastLVISEvaluator(
        "lt_shapes_val",
        distributed=False,
        output_dir=str(tmp_path / "fast"),
        fixed_ap=True,
        workers=2,
        train_datasets=("lt_shapes_train",),
    )
    ref = LVISEvaluator("lt_shapes_val", distributed=False, output_dir=str(tmp_path / "ref"), max_dets_per_image=300)
    got, want = _run(fast, inputs, outputs), _run(ref, inputs, outputs)
    assert set(got) == set(want) == {"bbox", "segm"}
    for task in want:
        for m in D2_METRICS:
            assert abs(got[task][m] - want[task][m]) <= 1e-7, (task, m, got[task][m], want[task][m])
        assert {"AP-fixed", "APr-fixed", "APc-fixed", "APf-fixed"} <= set(got[task])
    assert want["bbox"]["AP"] > 1.0  # the predictions are not degenerate
    table = _demo_table()
    assert table(got) == table(want)

    out = tmp_path / "fast"
    with open(out / "lvis_per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(load_json(os.path.join(tiny_root, VAL_JSON), "val")["categories"])
    assert set(rows[0]) >= {"id", "name", "frequency", "train_image_count", "ap_bbox", "ap_segm", "fixed_ap_bbox"}
    assert sum(int(r["train_image_count"]) for r in rows) > 0
    assert (out / "lvis_ap_vs_train_images.png").stat().st_size > 1000
    assert "| bbox |" in (out / "lvis_summary.md").read_text()
    # the same results file Detectron2 writes, so tools/evaluate_lvis.py can re-evaluate it
    assert (out / "lvis_instances_results.json").exists() and (
        tmp_path / "ref" / "lvis_instances_results.json"
    ).exists()


def test_config_picks_the_backend(tiny_root):
    from lt_detectron.engine import build_cfg
    from lt_detectron.engine.trainer import build_lt_evaluator

    cfg = build_cfg(os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml"), [])
    assert cfg.TEST.LT_EVALUATOR == "fast"
    assert type(build_lt_evaluator(cfg, "lt_shapes_val")) is FastLVISEvaluator
    assert cfg.TEST.LT_EVAL_SHARDS is True and build_lt_evaluator(cfg, "lt_shapes_val")._shards is True
    cfg.TEST.LT_EVAL_SHARDS = False  # the gather path (tests/test_eval_sharded.py)
    assert build_lt_evaluator(cfg, "lt_shapes_val")._shards is False
    cfg.TEST.LT_EVALUATOR = "lvis-api"
    assert type(build_lt_evaluator(cfg, "lt_shapes_val")) is LVISEvaluator
    cfg.TEST.LT_EVALUATOR = "pycocotools"
    with pytest.raises(ValueError, match="LT_EVALUATOR"):
        build_lt_evaluator(cfg, "lt_shapes_val")
