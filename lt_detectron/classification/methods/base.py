"""The method interface, its registry and the two calls the trainer makes (`prepare_method`, `build_method`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from torch import Tensor, nn

from lt_detectron import losses as L
from lt_detectron.registry import Registry

from ..config import CfgNode, ConfigError

__all__ = [
    "METHOD_REGISTRY",
    "ClassificationMethod",
    "MethodInputs",
    "StepContext",
    "build_method",
    "parse_target_prior",
    "prepare_method",
]

# METHOD.NAME -> a ClassificationMethod subclass, built as `cls(cfg, model, train_counts, **inputs.extras)` through
# its `from_config`. A user project adds one with `@METHOD_REGISTRY.register("name")` on the class.
METHOD_REGISTRY = Registry("LT_CLS_METHOD")


@dataclass
class StepContext:
    """Where training stands when a loss is computed (methods with schedules read it)."""

    epoch: int
    global_step: int
    lr: float


@dataclass
class MethodInputs:
    """What a method takes from the data before it is built (`ClassificationMethod.prepare`).

    Args:
        train_indices: the part of the training split to train on; None: all of it.
        extras: keyword arguments of the method's `from_config` (M2m's frozen_classifier, the meta dev_data).
    """

    train_indices: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def parse_target_prior(spec: str, train_counts: np.ndarray) -> Tensor:
    """METHOD.TEST_TARGET_PRIOR -> p_t (float32): `lt_detectron.losses.parse_target_prior` with a ConfigError."""
    try:
        prior = L.parse_target_prior(spec, np.asarray(train_counts), key="METHOD.TEST_TARGET_PRIOR")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return prior.to(torch.float32)


class ClassificationMethod(nn.Module):
    """Base class of the long-tailed training methods: adapts the model, computes the training loss, predicts.

    Subclasses set up heads in `__init__` (they may replace `model.classifier`), read their keys in `from_config`
    and override `training_loss` / `inference_logits`. Parameters of a method (extra heads) are optimised with the
    model's and saved in checkpoints; non-tensor state (risk balancer, eps tracker) travels through
    `get_extra_state` / `set_extra_state`.

    Args:
        model: the `LTClassifierNet` being trained.
        train_counts: n_c, training images per class.
        target_prior: p_t at inference, a METHOD.TEST_TARGET_PRIOR spec.
    """

    name = "base"  # METHOD.NAME; set by build_method
    # Which prior the inference logits carry, for target-prior injection in the shifted-prior evaluation
    # (metrics.evaluate prior_injection): "source" (trained on the long-tailed prior, e.g. CE) or "balanced"
    # (re-weighted, re-sampled or prior-corrected, so the logits are for the uniform prior).
    prior_kind = "source"

    @configurable
    def __init__(self, model: nn.Module, train_counts: np.ndarray, *, target_prior: str = "uniform"):
        super().__init__()
        counts = np.asarray(train_counts, dtype=np.int64)
        self.num_classes = len(counts)
        self.register_buffer("counts", torch.as_tensor(counts, dtype=torch.long), persistent=False)
        self.register_buffer("source_prior", L.prior_from_counts(counts, dtype=torch.float32), persistent=False)
        self.register_buffer("target_prior", parse_target_prior(target_prior, counts), persistent=False)

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module, train_counts: np.ndarray, **inputs: Any) -> dict[str, Any]:
        """Constructor arguments from `cfg`; `inputs` are what `prepare` returned as extras.

        Returns:
            keyword arguments of `__init__`.
        """
        return {"model": model, "train_counts": train_counts, "target_prior": cfg.METHOD.TEST_TARGET_PRIOR}

    @classmethod
    def prepare(cls, cfg: CfgNode, data: Any, training: bool = True, **given: Any) -> MethodInputs:
        """Inputs this method needs from the dataset bundle `data` before it is built.

        Args:
            given: inputs the caller already has (e.g. M2m's `frozen_classifier`).
            training: False for evaluation only (inputs only training needs are skipped).

        Returns:
            held-out training indices and extra constructor inputs; by default none.
        """
        return MethodInputs()

    def training_loss(
        self, model: nn.Module, images: Tensor, targets: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, float]]:
        """The loss of one batch.

        Returns:
            the loss the optimizer steps on, and scalars to log.
        """
        raise NotImplementedError

    def inference_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        """Logits whose softmax is the prediction for the test prior (uniform unless METHOD.TEST_TARGET_PRIOR says)."""
        return model(images)

    def with_target_prior(self, target_prior: Tensor | None) -> ClassificationMethod:
        """Set p_t used at inference (shifted-prior evaluation; None = the configured one). Returns self."""
        if target_prior is not None:
            self.target_prior = target_prior.to(self.target_prior)
        return self

    def balanced_sampling(self, epoch: int) -> bool:
        """Whether this method needs class-balanced batches at `epoch` (M2m after its deferred start)."""
        return False

    def write_outputs(self, out_dir: str) -> None:
        """Write the method's own evaluation outputs (figures, histories) to `out_dir`; by default none."""


def _method_class(name: str) -> type[ClassificationMethod]:
    if name not in METHOD_REGISTRY:
        raise ConfigError(f"unknown METHOD.NAME {name!r}; known methods: {', '.join(sorted(METHOD_REGISTRY.names()))}")
    return METHOD_REGISTRY.get(name)


def prepare_method(cfg: CfgNode, data: Any, training: bool = True, **given: Any) -> MethodInputs:
    """What `cfg.METHOD.NAME` needs from the data before `build_method` (see `ClassificationMethod.prepare`)."""
    return _method_class(cfg.METHOD.NAME).prepare(cfg, data, training=training, **given)


def build_method(cfg: CfgNode, model: nn.Module, train_counts: np.ndarray, **extras: Any) -> ClassificationMethod:
    """The method named by `cfg.METHOD.NAME`, set up on `model` (whose classifier it may replace).

    Args:
        extras: `prepare_method(...).extras`.
    """
    method = _method_class(cfg.METHOD.NAME)(cfg, model, train_counts, **extras)
    method.name = cfg.METHOD.NAME
    return method
