"""Classification networks as `LTClassifierNet(backbone, feat_dim, classifier)`.

The backbone maps images to features `(B, feat_dim)`; `classifier` is a plain attribute that methods replace
(e.g. a cosine classifier for LDAM, two heads for LDA). `build_model(name, num_classes, **kw)` knows:
"resnet32" (CIFAR), "resnet50", "resnext50_32x4d", "resnet152" (torchvision, never pretrained-downloaded),
"digits_mlp", "digits_cnn" (8x8 digits). `checkpoint=PATH` loads backbone weights from a local file.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from lt_detectron.registry import Registry

__all__ = ["LTClassifierNet", "build_model", "MODEL_REGISTRY", "resnet32_backbone", "load_backbone_checkpoint"]


# MODEL.NAME -> builder() -> (backbone, feat_dim). A user project adds one with `@MODEL_REGISTRY.register("name")`.
MODEL_REGISTRY = Registry("LT_CLS_MODEL")


class LTClassifierNet(nn.Module):
    """`forward(x) = classifier(backbone(x))`; `feat_dim` is the backbone's output width."""

    def __init__(self, backbone: nn.Module, feat_dim: int, classifier: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.feat_dim = feat_dim
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


class _PadShortcut(nn.Module):
    """ResNet option-A shortcut (He et al. 2016, CIFAR): subsample by 2 and zero-pad the new channels."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra_channels // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra_channels - half))


def resnet32_backbone(blocks_per_stage: int = 5, widths: tuple[int, int, int] = (16, 32, 64)) -> nn.Sequential:
    """CIFAR ResNet-(6n+2): 3 stages of n torchvision BasicBlocks (16/32/64 channels), option-A shortcuts."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    in_ch = widths[0]
    for stage, width in enumerate(widths):
        for i in range(blocks_per_stage):
            stride = 2 if (stage > 0 and i == 0) else 1
            shortcut = _PadShortcut(width - in_ch) if (stride != 1 or width != in_ch) else None
            layers.append(BasicBlock(in_ch, width, stride=stride, downsample=shortcut))
            in_ch = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    backbone = nn.Sequential(*layers)
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return backbone


@MODEL_REGISTRY.register("resnet32")
def _resnet32() -> tuple[nn.Module, int]:
    return resnet32_backbone(), 64


def _torchvision_backbone(arch: str) -> tuple[nn.Module, int]:
    model = getattr(torchvision.models, arch)(weights=None)  # never downloads; use checkpoint= for weights
    feat_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feat_dim


@MODEL_REGISTRY.register("resnet50")
def _resnet50() -> tuple[nn.Module, int]:
    return _torchvision_backbone("resnet50")


@MODEL_REGISTRY.register("resnext50_32x4d")
def _resnext50_32x4d() -> tuple[nn.Module, int]:
    return _torchvision_backbone("resnext50_32x4d")


@MODEL_REGISTRY.register("resnet152")
def _resnet152() -> tuple[nn.Module, int]:
    return _torchvision_backbone("resnet152")


@MODEL_REGISTRY.register("digits_mlp")
def _digits_mlp() -> tuple[nn.Module, int]:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 128), nn.ReLU(inplace=True), nn.Linear(128, 64), nn.ReLU(inplace=True)
    ), 64


@MODEL_REGISTRY.register("digits_cnn")
def _digits_cnn() -> tuple[nn.Module, int]:
    def conv(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    # 8x8 -> 4x4 after one pooling; a global average keeps 64 features.
    return nn.Sequential(
        *conv(1, 16), *conv(16, 32), nn.MaxPool2d(2), *conv(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ), 64


def load_backbone_checkpoint(backbone: nn.Module, path: str) -> None:
    """Load backbone weights from a local file: a state dict, or one under "state_dict"/"model".

    Keys may carry a "module." (DataParallel) or "backbone." prefix; classifier keys ("fc.*", "classifier.*")
    are dropped since the classifier is rebuilt for the target classes. Any other mismatch is an error.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a local file (nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and containers only: no code runs
    except Exception as e:
        raise ValueError(f"checkpoint {path} could not be read as a torch state dict: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(
            f"checkpoint {path}: expected a state dict (or one under 'state_dict'/'model'), got {type(state).__name__}"
        )
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key[len(prefix) :] if key.startswith(prefix) else key
        if not key.startswith(("fc.", "classifier.")):
            cleaned[key] = value
    try:
        missing, unexpected = backbone.load_state_dict(cleaned, strict=False)
    except RuntimeError as e:  # shape mismatches raise even with strict=False
        raise ValueError(f"checkpoint {path} does not match the backbone (is it for this architecture?): {e}") from None
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match the backbone: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}; is it for this architecture?"
        )


def build_model(name: str, num_classes: int, *, checkpoint: Optional[str] = None) -> LTClassifierNet:
    """Build `name` with a linear classifier to `num_classes`; `checkpoint` (a local path) initialises the backbone."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown classification model {name!r}; known: {', '.join(MODEL_REGISTRY.names())}")
    backbone, feat_dim = MODEL_REGISTRY.get(name)()
    if checkpoint:
        load_backbone_checkpoint(backbone, checkpoint)
    return LTClassifierNet(backbone, feat_dim, nn.Linear(feat_dim, num_classes))
