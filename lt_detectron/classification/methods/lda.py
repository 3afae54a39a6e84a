"""LDA: unbalanced + balanced classifiers, projection head, adaptive risk balance (Peng et al., ACM MM 2021,
arXiv:2110.02686)."""

from __future__ import annotations

from typing import Any

import numpy as np
from detectron2.config import configurable
from torch import Tensor, nn

from lt_detectron import losses as L
from lt_detectron.layers import projection_head
from lt_detectron.utils.records import record_from_config

from ..config import CfgNode, ConfigError
from .base import METHOD_REGISTRY, ClassificationMethod, StepContext

__all__ = ["LDAMethod"]


@METHOD_REGISTRY.register("lda")
class LDAMethod(ClassificationMethod):
    """LDA on the model's features: `model.classifier` becomes the balanced classifier g_b, so `model(x)` is
    already the inference output; g_u and the projection head are this method's parameters.

    Args:
        lda: the LDA hyper-parameters (METHOD.LDA.*); window 0 is K = max(1, N / (n_min * B)) from the balancer.
            `balanced_feature_grad` is a detection option: here L_b always reaches the features, as in the paper.
        batch_size: B, for the default window.
        model, train_counts, target_prior: as in `ClassificationMethod`.
    """

    prior_kind = "balanced"

    @configurable
    def __init__(
        self,
        model: nn.Module,
        train_counts: np.ndarray,
        *,
        lda: L.LDADefaults = L.LDA_DEFAULTS,
        batch_size: int | None = None,
        target_prior: str = "uniform",
    ):
        super().__init__(model, train_counts, target_prior=target_prior)
        d = model.feat_dim
        model.classifier = nn.Linear(d, self.num_classes)  # g_b
        self.unbalanced = nn.Linear(d, self.num_classes)  # g_u
        try:
            self.projection = projection_head(lda.proj_head, d, lda.proj_dim)
        except ValueError as err:
            raise ConfigError(f"METHOD.LDA.PROJ_HEAD: {err}") from None
        self.lda_loss = L.LDALoss.from_defaults(np.asarray(train_counts), lda, batch_size=batch_size)

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module, train_counts: np.ndarray, **inputs: Any) -> dict[str, Any]:
        lda = record_from_config(L.LDA_DEFAULTS, cfg.METHOD.LDA)
        return {**super().from_config(cfg, model, train_counts), "lda": lda, "batch_size": int(cfg.SOLVER.BATCH_SIZE)}

    def training_loss(
        self, model: nn.Module, images: Tensor, targets: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, float]]:
        features = model.backbone(images)
        out = self.lda_loss(self.unbalanced(features), model.classifier(features), self.projection(features), targets)
        return out.loss, {
            "loss_u": out.terms.unbalanced.item(),
            "loss_b": out.terms.balanced.item(),
            "lda_alpha": out.alpha,
            "lda_intra": out.terms.intra.detach().item(),
            "lda_inter": out.terms.inter.detach().item(),
        }

    def get_extra_state(self) -> dict:
        return {"balancer": self.lda_loss.balancer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.lda_loss.balancer.load_state_dict(state["balancer"])
