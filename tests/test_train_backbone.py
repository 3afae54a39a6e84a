"""The narrow ResNet-FPN backbone of the CPU demo: FPN levels, strides, widths, and clear config errors."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("detectron2")
torch = pytest.importorskip("torch")

from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import build_backbone  # noqa: E402

from lt_detectron.engine import build_cfg  # noqa: E402
from lt_detectron.modeling.backbone import BLOCKS_PER_STAGE, build_narrow_resnet_backbone  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASE = os.path.join(REPO, "configs", "demo", "lt_shapes_base.yaml")


def test_demo_backbone_outputs_p2_to_p5():
    cfg = build_cfg(DEMO_BASE)
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 128, 128))
    assert list(features) == ["p2", "p3", "p4", "p5"]  # no P6 for small images
    for level, stride in zip(features, (4, 8, 16, 32)):
        assert backbone.output_shape()[level].stride == stride
        assert features[level].shape == (1, cfg.MODEL.FPN.OUT_CHANNELS, 128 // stride, 128 // stride)


@pytest.mark.parametrize("depth", sorted(BLOCKS_PER_STAGE))
def test_depth_sets_blocks_and_width_doubles(depth):
    cfg = build_cfg(DEMO_BASE, ["MODEL.RESNETS.DEPTH", str(depth), "MODEL.RESNETS.RES2_OUT_CHANNELS", "16"])
    resnet = build_narrow_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert [len(stage) for stage in resnet.stages] == BLOCKS_PER_STAGE[depth]
    assert [resnet.output_shape()[f"res{i}"].channels for i in range(2, 6)] == [16, 32, 64, 128]


def test_unsupported_depth_and_frozen_bn_are_clear_errors():
    with pytest.raises(ValueError, match="DEPTH=50"):
        build_narrow_resnet_backbone(build_cfg(DEMO_BASE, ["MODEL.RESNETS.DEPTH", "50"]), ShapeSpec(channels=3))
    with pytest.raises(ValueError, match="FrozenBN"):
        build_narrow_resnet_backbone(build_cfg(DEMO_BASE, ["MODEL.RESNETS.NORM", "FrozenBN"]), ShapeSpec(channels=3))
