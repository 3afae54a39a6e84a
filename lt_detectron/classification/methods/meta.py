"""Meta-learned conditional weights (Jamal et al., CVPR 2020, arXiv:2003.10780, Algorithm 1) on a CE, focal or
LDAM loss: meta_ce, meta_focal, meta_ldam."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from lt_detectron import losses as L
from lt_detectron import meta as M
from lt_detectron.utils.io import write_json_atomic

from .. import metrics
from ..config import CfgNode, ConfigError
from .base import METHOD_REGISTRY, ClassificationMethod, MethodInputs, StepContext
from .losses import CEMethod, FocalMethod, LDAMMethod, LossMethod

__all__ = ["MetaMethod", "MetaCEMethod", "MetaFocalMethod", "MetaLDAMMethod"]


class MetaMethod(ClassificationMethod):
    """Stage 1 (epochs before `meta.start`): the base method's loss. Stage 2: per-example weights w_y + eps_i from
    `lt_detectron.meta.MetaReweighter` against a class-balanced dev batch; the returned loss is the weighted one
    the optimizer steps on. `meta.l2rw` is the L2RW ablation, `meta.mode` "classifier" meta-differentiates only
    the classifier on detached features (Jamal et al. 2020 §5.3). Subclasses name the base method.

    Args:
        base: the loss method of stage 1, whose per-example loss stage 2 weights and whose inference is used.
        dev_data: the class-balanced development set D (`prepare`).
        meta: METHOD.META.* with `start` the first stage-2 epoch (`from_config` turns the config's -1 into the
            first lr decay); inner_lr <= 0 follows the optimizer's lr.
        base_lr: the virtual step's lr before the first step when it follows the optimizer's.
        seed: seed of the dev batch order.
        model, train_counts, target_prior: as in `ClassificationMethod`.
    """

    base_method: type[LossMethod] = CEMethod
    prior_kind = "balanced"

    @configurable
    def __init__(
        self,
        model: nn.Module,
        train_counts: np.ndarray,
        *,
        base: LossMethod,
        dev_data: Dataset | None,
        meta: M.MetaDefaults = M.META_DEFAULTS,
        base_lr: float = 0.1,
        seed: int = 0,
        target_prior: str = "uniform",
    ):
        super().__init__(model, train_counts, target_prior=target_prior)
        self.base = base
        self.start_epoch = meta.start
        self.follow_lr = meta.inner_lr <= 0  # eta = the optimizer's current lr
        if meta.mode not in ("full", "classifier"):
            raise ConfigError(f"METHOD.META.MODE={meta.mode!r}; known: full, classifier")
        self.mode = meta.mode
        self.reweighter = M.MetaReweighter(
            L.class_weights(np.asarray(train_counts), kind="effective_number", beta=meta.beta),
            inner_lr=base_lr if self.follow_lr else meta.inner_lr,
            eps_lr=meta.eps_lr,
            l2rw=meta.l2rw,
        )
        if dev_data is None or len(dev_data) == 0:
            raise ConfigError(f"{type(self).__name__}: no development set; see METHOD.META.DEV_SOURCE / DEV_PER_CLASS")
        self.dev_data = dev_data
        self.dev_sampler = M.DevBatchSampler(np.arange(len(dev_data)), meta.dev_batch_size, seed=seed)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, model: nn.Module, train_counts: np.ndarray, dev_data: Dataset | None = None, **inputs: Any
    ) -> dict[str, Any]:
        c = cfg.METHOD.META
        meta = dataclasses.replace(
            M.META_DEFAULTS,
            start=M.stage_two_start(int(c.START_EPOCH), cfg.SOLVER.STEPS),
            inner_lr=float(c.INNER_LR),
            eps_lr=float(c.EPS_LR),
            beta=c.BETA,
            mode=c.MODE,
            l2rw=bool(c.L2RW),
            dev_per_class=int(c.DEV_PER_CLASS),
            dev_batch_size=int(c.DEV_BATCH_SIZE),
        )
        return {
            **super().from_config(cfg, model, train_counts),
            "base": cls.base_method(cfg, model, train_counts),
            "dev_data": dev_data,
            "meta": meta,
            "base_lr": float(cfg.SOLVER.BASE_LR),
            "seed": int(cfg.SEED),
        }

    @classmethod
    def prepare(cls, cfg: CfgNode, data: Any, training: bool = True, **given: Any) -> MethodInputs:
        """The class-balanced development set D (Jamal et al. 2020 §5), k = META.DEV_PER_CLASS per class, as
        `dev_data`.

        DEV_SOURCE "train": held out of the training split (CIFAR-LT, iNat), which shrinks the training set and its
        counts n_c; "val": taken from the validation split (ImageNet-LT, Places-LT, digits-LT's val_per_class).
        """
        meta = cfg.METHOD.META
        k = int(meta.DEV_PER_CLASS)
        if meta.DEV_SOURCE == "train":
            labels = np.asarray(data.train.targets, dtype=np.int64)
            split = M.build_dev_split(labels, k, num_classes=data.num_classes, seed=cfg.SEED)
            return MethodInputs(
                train_indices=split.train_indices, extras={"dev_data": Subset(data.train, split.dev_indices.tolist())}
            )
        if meta.DEV_SOURCE == "val":
            if data.val is None:
                raise ConfigError(
                    f"METHOD.META.DEV_SOURCE=val but dataset {cfg.DATASET.NAME!r} has no val split; "
                    "use DEV_SOURCE train (or DATASET.ARGS.VAL_PER_CLASS for digits_lt)"
                )
            labels = np.asarray(data.val.targets, dtype=np.int64)
            rng = np.random.default_rng(cfg.SEED)
            picks = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in range(data.num_classes)]
            return MethodInputs(extras={"dev_data": Subset(data.val, np.sort(np.concatenate(picks)).tolist())})
        raise ConfigError(f"METHOD.META.DEV_SOURCE={meta.DEV_SOURCE!r}; known: train, val")

    def inference_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        return self.base.inference_logits(model, images)

    def _dev_batch(self, device: torch.device) -> tuple[Tensor, Tensor]:
        items = [self.dev_data[int(i)] for i in self.dev_sampler.next_batch()]
        images = torch.stack([torch.as_tensor(x) for x, _ in items]).to(device)
        return images, torch.as_tensor([int(y) for _, y in items], device=device)

    def training_loss(
        self, model: nn.Module, images: Tensor, targets: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, float]]:
        if ctx.epoch < self.start_epoch:
            return self.base.training_loss(model, images, targets, ctx)
        if self.follow_lr:
            self.reweighter.inner_lr = ctx.lr
        dev_images, dev_targets = self._dev_batch(images.device)

        def per_example(logits: Tensor, y: Tensor) -> Tensor:
            return self.base.loss(logits, y, reduction="none")

        if self.mode == "full":
            result = self.reweighter.step(
                model,
                per_example,
                images,
                targets,
                dev_images,
                dev_targets,
                iteration=ctx.global_step,
                compute_loss=True,
            )
            loss = result.loss
        else:  # meta-gradient through the classifier only; the real step still trains the whole network
            features = model.backbone(images)
            with torch.no_grad():
                dev_features = model.backbone(dev_images)
            result = self.reweighter.step(
                model.classifier,
                per_example,
                features.detach(),
                targets,
                dev_features,
                dev_targets,
                iteration=ctx.global_step,
            )
            loss = self.reweighter.weighted_loss(per_example(model.classifier(features), targets), result)
        return loss, {"meta_dev_loss": float(result.dev_loss), "meta_eps_mean": float(result.eps.mean())}

    def write_outputs(self, out_dir: str) -> None:
        """eps_history.json and eps.png: per-class mean eps over training by shot group (Jamal et al. 2020 Fig. 3)."""
        iterations, means = self.reweighter.tracker.history()
        history = {
            "iterations": iterations.tolist(),
            "eps_mean": [[None if np.isnan(v) else float(v) for v in row] for row in means],
        }
        write_json_atomic(history, os.path.join(out_dir, "eps_history.json"), indent=1, allow_nan=False)
        groups = metrics.shot_groups(self.counts.cpu().numpy())
        M.plot_eps_by_group(iterations, means, groups, os.path.join(out_dir, "eps.png"))

    def get_extra_state(self) -> dict:
        return {"reweighter": self.reweighter.state_dict(), "dev_sampler": self.dev_sampler.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        # eta follows the lr schedule: take the saved value so the hyper-parameter check does not warn.
        self.reweighter.inner_lr = state["reweighter"]["hparams"]["inner_lr"]
        self.reweighter.load_state_dict(state["reweighter"])
        self.dev_sampler.load_state_dict(state["dev_sampler"])


@METHOD_REGISTRY.register("meta_ce")
class MetaCEMethod(MetaMethod):
    """Meta-learned weights on CE."""


@METHOD_REGISTRY.register("meta_focal")
class MetaFocalMethod(MetaMethod):
    """Meta-learned weights on the focal loss (METHOD.FOCAL.*)."""

    base_method = FocalMethod


@METHOD_REGISTRY.register("meta_ldam")
class MetaLDAMMethod(MetaMethod):
    """Meta-learned weights on LDAM with its cosine classifier (METHOD.LDAM.*)."""

    base_method = LDAMMethod
