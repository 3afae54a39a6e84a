"""A narrow ResNet + FPN backbone for training from scratch on CPU (the lt_shapes demo).

Detectron2's own `build_resnet_fpn_backbone` fixes the width of ResNet-18/34 at 64 channels and adds a P6 level;
for 128 px images on two CPU cores we want thinner stages and no P6. Everything is assembled from Detectron2's
own blocks (`BasicStem`, `BasicBlock`, `ResNet.make_stage`, `FPN`); only the widths and depths differ.

Config (existing Detectron2 keys, no new ones):
  MODEL.RESNETS.DEPTH               10 ([1,1,1,1] basic blocks), 18 ([2,2,2,2]) or 34 ([3,4,6,3])
  MODEL.RESNETS.STEM_OUT_CHANNELS   stem width
  MODEL.RESNETS.RES2_OUT_CHANNELS   res2 width; each later stage doubles it
  MODEL.RESNETS.NORM                "BN" / "GN" / "SyncBN" (train from scratch: not "FrozenBN")
  MODEL.RESNETS.OUT_FEATURES, MODEL.FPN.IN_FEATURES / OUT_CHANNELS / NORM / FUSE_TYPE as usual.
"""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet

__all__ = ["build_narrow_resnet_backbone", "build_narrow_resnet_fpn_backbone", "BLOCKS_PER_STAGE"]

# Basic-block counts of res2..res5 for each supported depth.
BLOCKS_PER_STAGE = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


def build_narrow_resnet_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """ResNet-10/18/34 of basic blocks with configurable widths (see the module docstring)."""
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH={depth} is not supported by the narrow ResNet backbone; "
            f"use one of {sorted(BLOCKS_PER_STAGE)} (or Detectron2's build_resnet_fpn_backbone for 50/101/152)."
        )
    norm = cfg.MODEL.RESNETS.NORM
    if norm == "FrozenBN":
        raise ValueError(
            "MODEL.RESNETS.NORM='FrozenBN' freezes random statistics when training from scratch; "
            "set it to 'BN' or 'GN' for the narrow ResNet backbone."
        )
    stem = BasicStem(in_channels=input_shape.channels, out_channels=cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, norm=norm)
    out_features = cfg.MODEL.RESNETS.OUT_FEATURES
    # Build stages only up to the deepest requested feature.
    num_stages = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in out_features) - 1
    in_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
    out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    stages = []
    for idx, num_blocks in enumerate(BLOCKS_PER_STAGE[depth][:num_stages]):
        first_stride = 1 if idx == 0 else 2
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=norm,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_narrow_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Narrow ResNet + FPN without the P6 level (small images have nothing to detect at stride 64)."""
    return FPN(
        bottom_up=build_narrow_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=None,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
