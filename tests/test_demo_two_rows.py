"""`make demo`'s two rows come from one inference pass: the as-trained row equals Detectron2's own inference of the
trained weights, and the post-hoc row equals a model built with MODEL.LT.BOX_CLASSIFIER pc_softmax that loads the
same weights (benchmarks/lt_shapes_heads.py's evaluate_posthoc), detection for detection. Tiny: 12 training images,
2 iterations, 8 val images."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("detectron2")
torch = pytest.importorskip("torch")

from _scripts import load_script  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402

from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.engine import LTTrainer, build_cfg  # noqa: E402

TINY = [
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "2",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "TEST.LT_EVAL_WORKERS", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lt_shapes_demo_rows"))
    generate_lt_shapes(root, seed=0, num_train_images=12, num_val_images=8)
    out = str(tmp_path_factory.mktemp("demo_out"))
    demo = load_script("tools/demo.py", "lt_tools_demo_rows")
    argv = ["--max-iter", "2", "--output", out, *TINY, "DATASETS.LT_SHAPES_DIR", root]
    assert demo.main(argv) == 0
    with open(os.path.join(out, "demo_results.json")) as f:
        summary = json.load(f)
    yield demo, root, out, summary
    register_lt_shapes()  # back to the default root for other tests (registration is lazy)


def _evaluate(demo, root: str, weights: str, out: str, overrides: list) -> dict:
    cfg = build_cfg(demo.DEFAULT_CONFIG, TINY + ["DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", out] + overrides)
    cfg.freeze()
    model = LTTrainer.build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    return LTTrainer.test(cfg, model)


def _detections(folder: str) -> list:
    with open(os.path.join(folder, "inference", "lt_shapes_val", "lvis_instances_results.json")) as f:
        return json.load(f)


def test_demo_writes_two_rows_a_table_and_a_figure(demo_run):
    _, _, out, summary = demo_run
    assert summary["posthoc"]["box_classifier"] == "pc_softmax"
    assert "change" in summary["table"] and "bbox APr" in summary["table"]
    assert os.path.isfile(os.path.join(out, summary["figure"]))
    assert summary["numerics"]["isa"] and summary["numerics"]["cpu_model"]


def test_one_pass_rows_equal_separate_evaluations(demo_run):
    demo, root, out, summary = demo_run
    weights = os.path.join(out, "model_final.pth")
    trained = _evaluate(demo, root, weights, os.path.join(out, "check_trained"), [])
    pc = ["MODEL.ROI_HEADS.NAME", "LTROIHeads", "MODEL.LT.BOX_CLASSIFIER", "pc_softmax"]
    posthoc = _evaluate(demo, root, weights, os.path.join(out, "check_posthoc"), pc)
    assert summary["results"] == trained
    assert summary["posthoc"]["results"] == posthoc
    # The detections themselves, box for box and score for score (the tiny run's AP is ~0 in both rows):
    assert _detections(out) == _detections(os.path.join(out, "check_trained"))
    with open(os.path.join(out, "inference", "lt_shapes_val_pc_softmax", "lvis_instances_results.json")) as f:
        assert json.load(f) == _detections(os.path.join(out, "check_posthoc"))
    assert _detections(out) != _detections(os.path.join(out, "check_posthoc"))  # the prior moves the scores


def test_batched_mask_paste_equals_detectron2s_bit_for_bit():
    from detectron2.layers.mask_ops import paste_masks_in_image

    demo = load_script("tools/demo.py", "lt_tools_demo_paste")
    gen = torch.Generator().manual_seed(0)
    n = 200
    xy = torch.rand(n, 2, generator=gen) * 140 - 10  # some boxes cross the image border
    wh = 0.5 + torch.rand(n, 2, generator=gen) * 60
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, 96), boxes[:, 1::2].clamp(0, 128)  # as clipped
    boxes[:3] = torch.tensor([[0.0, 0.0, 96.0, 128.0], [10.25, 3.5, 10.75, 90.0], [95.0, 127.0, 96.0, 128.0]])
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]  # detector_postprocess drops empty ones
    n = len(boxes)
    masks = torch.rand(n, 14, 14, generator=gen)
    expected = paste_masks_in_image(masks, boxes, (128, 96))
    assert torch.equal(demo.paste_masks(masks, boxes, (128, 96)), expected)
    assert demo.paste_masks(masks[:0], boxes[:0], (128, 96)).shape == (0, 128, 96)
