"""M2m (Kim et al., CVPR 2020, arXiv:2004.00431): plain CE until the deferred start, then class-balanced batches
with major-to-minor translation (the algorithm: `lt_detectron.classification.m2m`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from torch import Tensor, nn

from lt_detectron import losses as L
from lt_detectron.utils.checkpoint import CheckpointError, read_checkpoint_file
from lt_detectron.utils.cli import UserError, error_message

from ..config import CfgNode, ConfigError, resolve_device
from ..m2m import M2M_DEFAULTS, M2mDefaults, m2m_batch
from ..models import build_model
from .base import METHOD_REGISTRY, ClassificationMethod, MethodInputs, StepContext

__all__ = ["M2mMethod", "load_frozen_classifier"]


def load_frozen_classifier(cfg: CfgNode, num_classes: int, path: str) -> nn.Module:
    """M2m's g: the configured architecture with a linear classifier, weights from `path`, frozen on
    cfg.DEVICE ("auto" resolved).

    The file is read with `torch.load(weights_only=True)`: a state dict, or a dict with a "model" entry.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"METHOD.M2M.G_CHECKPOINT={path!r} does not exist; give the model_final.pth of a CE run of the same model"
        )
    g = build_model(cfg.MODEL.NAME, num_classes, **{k.lower(): v for k, v in cfg.MODEL.ARGS.items()})
    fix = (
        "Fix: give the model_final.pth of a CE run (method ce) of the same model, or leave METHOD.M2M.G_CHECKPOINT "
        "empty and the command line trains g first"
    )
    try:  # truncated, not a torch file, or objects the safe loader refuses: the reason in words
        state = read_checkpoint_file(path, lambda p: torch.load(p, map_location="cpu", weights_only=True))
    except CheckpointError as err:
        raise UserError(f"METHOD.M2M.G_CHECKPOINT={path!r} {err.reason}. {fix}.") from None
    try:
        g.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as err:
        reason = " ".join(error_message(err).split())  # torch lists the missing and unexpected keys on lines
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise UserError(
            f"METHOD.M2M.G_CHECKPOINT={path!r} does not fit model {cfg.MODEL.NAME!r} with a linear classifier "
            f"({reason}). {fix}."
        ) from None
    return g.to(resolve_device(cfg.DEVICE)).eval().requires_grad_(False)


@METHOD_REGISTRY.register("m2m")
class M2mMethod(ClassificationMethod):
    """M2m on the model: CE throughout; from `m2m.start_epoch` on, class-balanced batches in which some samples are
    translated from majority seeds by the frozen ERM classifier g.

    g is kept out of this module's parameters and state dict: it is an input, not something trained or resumed.

    Args:
        m2m: the M2m hyper-parameters (METHOD.M2M.*).
        frozen_classifier: g (`prepare` loads it from METHOD.M2M.G_CHECKPOINT); needed only for training.
        model, train_counts, target_prior: as in `ClassificationMethod`.
    """

    prior_kind = "balanced"  # class-balanced batches after the deferred start

    @configurable
    def __init__(
        self,
        model: nn.Module,
        train_counts: np.ndarray,
        *,
        m2m: M2mDefaults = M2M_DEFAULTS,
        frozen_classifier: nn.Module | None = None,
        target_prior: str = "uniform",
    ):
        super().__init__(model, train_counts, target_prior=target_prior)
        self.m2m = m2m
        self.ce = L.build_loss("ce")
        self._g: list[nn.Module] = []  # a list keeps g out of parameters(), state_dict() and .to()
        if frozen_classifier is not None:
            frozen_classifier.eval().requires_grad_(False)
            self._g.append(frozen_classifier)

    @classmethod
    def from_config(
        cls,
        cfg: CfgNode,
        model: nn.Module,
        train_counts: np.ndarray,
        frozen_classifier: nn.Module | None = None,
        **inputs: Any,
    ) -> dict[str, Any]:
        c = cfg.METHOD.M2M
        m2m = M2mDefaults(
            start_epoch=int(c.START_EPOCH),
            steps=int(c.STEPS),
            step_size=float(c.STEP_SIZE),
            beta=float(c.BETA),
            lam=float(c.LAMBDA),
            gamma=float(c.GAMMA),
            noise_std=float(c.NOISE_STD),
        )
        return {**super().from_config(cfg, model, train_counts), "m2m": m2m, "frozen_classifier": frozen_classifier}

    @classmethod
    def prepare(cls, cfg: CfgNode, data: Any, training: bool = True, **given: Any) -> MethodInputs:
        """g from `given["frozen_classifier"]`, else from METHOD.M2M.G_CHECKPOINT; not needed for evaluation only.

        An empty G_CHECKPOINT is an error here: the command line (`train.train_frozen_classifier`) trains g first.
        """
        if not training:
            return MethodInputs()
        g = given.get("frozen_classifier")
        if g is None:
            path = cfg.METHOD.M2M.G_CHECKPOINT
            if not path:
                raise ConfigError(
                    "m2m needs its frozen ERM classifier g: set METHOD.M2M.G_CHECKPOINT to the model_final.pth of a "
                    "CE run of the same model, or train with `python -m lt_detectron.classification.train`, which "
                    "trains g first"
                )
            g = load_frozen_classifier(cfg, data.num_classes, path)
        return MethodInputs(extras={"frozen_classifier": g})

    def balanced_sampling(self, epoch: int) -> bool:
        return epoch >= self.m2m.start_epoch

    def training_loss(
        self, model: nn.Module, images: Tensor, targets: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, float]]:
        stats: dict[str, float] = {}
        if ctx.epoch >= self.m2m.start_epoch:
            if not self._g:
                raise RuntimeError("m2m: no frozen classifier g was given (METHOD.M2M.G_CHECKPOINT)")
            g = self._g[0].to(images.device)
            images, stats = m2m_batch(g, model, images, targets, self.counts, self.m2m)
        return self.ce(model(images), targets), stats
