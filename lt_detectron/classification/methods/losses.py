"""Methods that are one loss of `lt_detectron.losses` on `model(x)`: a short subclass of `LossMethod` each."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from torch import Tensor, nn

from lt_detectron import losses as L
from lt_detectron.layers import CosineLinear

from ..config import CfgNode, ConfigError
from .base import METHOD_REGISTRY, ClassificationMethod, StepContext

__all__ = [
    "LossMethod",
    "CEMethod",
    "CBCEMethod",
    "FocalMethod",
    "CBFocalMethod",
    "LDAMMethod",
    "LDAMDRWMethod",
    "BalancedSoftmaxMethod",
    "PCSoftmaxMethod",
    "LADEMethod",
    "drw_start_epoch",
]


def drw_start_epoch(cfg: CfgNode, forced: bool = False) -> int:
    """Epoch at which deferred re-weighting starts, or -1 when it is off.

    On when `forced` (ldam_drw) or METHOD.DRW.ENABLED; METHOD.DRW.START_EPOCH -1 is Cao et al.'s 160 of 200, i.e.
    round(LDAM_DEFAULTS.drw_start_fraction * SOLVER.EPOCHS).
    """
    c = cfg.METHOD.DRW
    if not (forced or c.ENABLED):
        return -1
    start = int(c.START_EPOCH)
    return start if start >= 0 else int(round(L.LDAM_DEFAULTS.drw_start_fraction * cfg.SOLVER.EPOCHS))


class LossMethod(ClassificationMethod):
    """`loss(model(x), y)` with optional deferred re-weighting (DRW, METHOD.DRW.*); subclasses name the loss.

    Args:
        loss: an `lt_detectron.losses` module (`build_loss(loss_name, counts, **loss_options(cfg))`).
        drw_start: epoch from which DRW weights the per-example losses; -1: never.
        drw_beta: effective-number beta of the DRW class weights.
        model, train_counts, target_prior: as in `ClassificationMethod`.
    """

    loss_name = "ce"  # the `lt_detectron.losses` registry name from_config builds
    class_weighted = False  # the loss weights classes itself, so DRW would weight them twice
    forced_drw = False  # DRW on whatever METHOD.DRW.ENABLED says (ldam_drw)

    @configurable
    def __init__(
        self,
        model: nn.Module,
        train_counts: np.ndarray,
        *,
        loss: nn.Module,
        drw_start: int = -1,
        drw_beta: float = L.LDAM_DEFAULTS.drw_beta,
        target_prior: str = "uniform",
    ):
        super().__init__(model, train_counts, target_prior=target_prior)
        self.loss = loss
        self.drw = L.DeferredReweighting(self.counts.cpu(), drw_start, drw_beta)
        if self.drw.enabled:
            if self.class_weighted:
                raise ConfigError(
                    f"METHOD.DRW.ENABLED with {type(self).__name__}: the loss is already class-weighted; use DRW "
                    "with ce/focal/ldam or set METHOD.DRW.ENABLED False"
                )
            if not loss.per_example:
                raise ConfigError(f"DRW needs a per-example loss; {loss!r} is not (set METHOD.DRW.ENABLED False)")
            self.prior_kind = "balanced"

    @classmethod
    def loss_options(cls, cfg: CfgNode) -> dict[str, Any]:
        """Keyword arguments of `build_loss(cls.loss_name, ...)` from `cfg`."""
        return {}

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module, train_counts: np.ndarray, **inputs: Any) -> dict[str, Any]:
        return {
            **super().from_config(cfg, model, train_counts),
            "loss": L.build_loss(cls.loss_name, counts=np.asarray(train_counts), **cls.loss_options(cfg)),
            "drw_start": drw_start_epoch(cfg, forced=cls.forced_drw),
            "drw_beta": float(cfg.METHOD.DRW.BETA),
        }

    def training_loss(
        self, model: nn.Module, images: Tensor, targets: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, float]]:
        logits = model(images)
        weights = self.drw.weights(ctx.epoch)
        if weights is None:
            return self.loss(logits, targets), {}
        # CB convention (docs/methods.md#conventions): batch mean of the weighted per-example losses.
        weights = weights.to(device=logits.device, dtype=logits.dtype)
        return (weights[targets] * self.loss(logits, targets, reduction="none")).mean(), {"drw": 1.0}


def _cb_options(cfg: CfgNode) -> dict[str, Any]:
    return {"beta": cfg.METHOD.CB.BETA}


def _focal_options(cfg: CfgNode) -> dict[str, Any]:
    return {"gamma": float(cfg.METHOD.FOCAL.GAMMA), "form": cfg.METHOD.FOCAL.FORM}


@METHOD_REGISTRY.register("ce")
class CEMethod(LossMethod):
    """Cross-entropy (ERM), the reference of every comparison."""


@METHOD_REGISTRY.register("cb_ce")
class CBCEMethod(LossMethod):
    """Class-balanced CE (Cui et al., CVPR 2019, arXiv:1901.05555), METHOD.CB.BETA."""

    loss_name, class_weighted, prior_kind = "cb", True, "balanced"

    @classmethod
    def loss_options(cls, cfg: CfgNode) -> dict[str, Any]:
        return _cb_options(cfg)


@METHOD_REGISTRY.register("focal")
class FocalMethod(LossMethod):
    """Focal loss (Lin et al., ICCV 2017, arXiv:1708.02002), METHOD.FOCAL.*."""

    loss_name = "focal"

    @classmethod
    def loss_options(cls, cfg: CfgNode) -> dict[str, Any]:
        return _focal_options(cfg)


@METHOD_REGISTRY.register("cb_focal")
class CBFocalMethod(LossMethod):
    """Class-balanced focal loss (Cui et al. 2019), METHOD.CB.BETA and METHOD.FOCAL.*."""

    loss_name, class_weighted, prior_kind = "cb_focal", True, "balanced"

    @classmethod
    def loss_options(cls, cfg: CfgNode) -> dict[str, Any]:
        return {**_cb_options(cfg), **_focal_options(cfg)}


@METHOD_REGISTRY.register("ldam")
class LDAMMethod(LossMethod):
    """LDAM (Cao et al., NeurIPS 2019, arXiv:1906.07413) on a cosine classifier; `scale * cos` at inference.

    Args:
        scale: s, the logit scale the LDAM loss applies (METHOD.LDAM.SCALE).
        **kwargs: as in `LossMethod`.
    """

    loss_name = "ldam"

    @classmethod
    def loss_options(cls, cfg: CfgNode) -> dict[str, Any]:
        return {"max_margin": float(cfg.METHOD.LDAM.MAX_MARGIN), "scale": float(cfg.METHOD.LDAM.SCALE)}

    @configurable
    def __init__(self, model: nn.Module, train_counts: np.ndarray, *, scale: float = L.LDAM_DEFAULTS.scale, **kwargs):
        super().__init__(model, train_counts, **kwargs)
        self.scale = float(scale)
        model.classifier = CosineLinear(model.feat_dim, self.num_classes, init="uniform_renorm")

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module, train_counts: np.ndarray, **inputs: Any) -> dict[str, Any]:
        return {**super().from_config(cfg, model, train_counts), "scale": float(cfg.METHOD.LDAM.SCALE)}

    def inference_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        return self.scale * model(images)


@METHOD_REGISTRY.register("ldam_drw")
class LDAMDRWMethod(LDAMMethod):
    """LDAM with deferred re-weighting always on (Cao et al. 2019's LDAM-DRW)."""

    forced_drw = True


@METHOD_REGISTRY.register("balanced_softmax")
class BalancedSoftmaxMethod(LossMethod):
    """Balanced softmax (Ren et al., NeurIPS 2020, arXiv:2007.10740); `z + log p_t` at inference."""

    loss_name, prior_kind = "balanced_softmax", "balanced"

    def inference_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        # The logits already exclude the source prior (Hong et al. 2021 eq. 17).
        uniform = torch.full_like(self.source_prior, 1.0 / self.num_classes)
        return L.adjust_logits(model(images), uniform, self.target_prior)


@METHOD_REGISTRY.register("lade")
class LADEMethod(BalancedSoftmaxMethod):
    """LADE (Hong et al., CVPR 2021, arXiv:2012.00321): LADE-CE + alpha * LADER, `z + log p_t` at inference."""

    loss_name = "lade"

    @classmethod
    def loss_options(cls, cfg: CfgNode) -> dict[str, Any]:
        c = cfg.METHOD.LADE
        return {"alpha": float(c.ALPHA), "lam": float(c.LAMBDA), "importance": c.IMPORTANCE}


@METHOD_REGISTRY.register("pc_softmax")
class PCSoftmaxMethod(LossMethod):
    """CE training, PC-Softmax at inference: `z - log p_s + log p_t` (Hong et al., CVPR 2021, arXiv:2012.00321)."""

    prior_kind = "balanced"

    def inference_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        return L.adjust_logits(model(images), self.source_prior, self.target_prior)
