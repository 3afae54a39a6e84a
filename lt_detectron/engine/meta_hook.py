"""Meta-learned per-RoI weights in Detectron2 training (docs/methods.md#meta-weights-in-detection;
Algorithm 1 of Jamal et al., CVPR 2020, arXiv:2003.10780).

Three pieces, usable from tools/train_net.py or any Detectron2 project with a GeneralizedRCNN-like model and
LTROIHeads:
- `prepare_meta_datasets(cfg)` (meta_datasets.py): registers `<train>__meta_train` / `<train>__meta_dev` (the held-out
  split) and returns a cfg that trains on the former;
- `MetaWeightingHook`: when the per-RoI meta step (`RoIMetaStep`, meta_step.py) runs, its state in the trainer's
  checkpoint, the eps plot after training;
- `MetaWeightingTrainerMixin`: `class Trainer(MetaWeightingTrainerMixin, DefaultTrainer)` does both.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np
from detectron2.config import CfgNode
from detectron2.engine import HookBase
from detectron2.engine.hooks import PeriodicCheckpointer, PeriodicWriter
from detectron2.utils import comm
from torch import nn

from lt_detectron.meta import plot_eps_by_group
from lt_detectron.utils import write_json_atomic

from .meta_datasets import prepare_meta_datasets
from .meta_step import RoIMetaStep

__all__ = ["MetaWeightingHook", "MetaWeightingTrainerMixin", "EPS_PLOT_NAME"]

logger = logging.getLogger(__name__)

EPS_PLOT_NAME = "eps_by_group.png"
EPS_HISTORY_NAME = "meta_eps.json"


class MetaWeightingHook(HookBase):
    """Algorithm 1 stage 2 inside Detectron2's training loop: schedules the per-RoI meta step.

    It installs a `RoIMetaStep` as the model's `roi_heads.roi_reweighter`. From iteration MODEL.LT.META.START_ITER on,
    before each step it sets eta (INNER_LR <= 0: the optimizer's lr) and loads a dev batch, so that the ROI heads'
    training forward asks the step for per-RoI weights and the box predictor weights its `loss_cls` with them; after
    the step it gathers the eps history of all ranks. Before that, training is unchanged (stage 1). Its state
    (reweighter, dev batch order) rides in the trainer's checkpoint through `state_dict`; after training it writes
    `eps_by_group.png` and `meta_eps.json` to cfg.OUTPUT_DIR.

    Args:
        cfg: a config prepared by `prepare_meta_datasets`.
        model: the model being trained (LTROIHeads with a per-RoI box classifier; DDP-wrapped or not).
    """

    def __init__(self, cfg: CfgNode, model: nn.Module):
        self.step = RoIMetaStep.from_config(cfg, model)
        self.reweighter, self.dev_sampler = self.step.reweighter, self.step.dev_sampler
        self.roi_heads = self.step.roi_heads
        self.roi_heads.roi_reweighter = self.step
        self.num_classes = self.step.num_classes
        # INNER_LR <= 0: eta follows the optimizer's current lr (Jamal et al. 2020 use the model's lr for the virtual
        # step).
        self.follow_lr = cfg.MODEL.LT.META.INNER_LR <= 0
        self.output_dir, self.train_datasets = cfg.OUTPUT_DIR, tuple(cfg.DATASETS.TRAIN)
        self._steps_before = 0

    def before_step(self) -> None:
        self.step.clear()
        if self.reweighter.is_meta_step(self.trainer.iter):
            if self.follow_lr:
                self.reweighter.inner_lr = float(self.trainer.optimizer.param_groups[0]["lr"])
            self._steps_before = self.reweighter.meta_steps
            self.step.load_dev_batch(self.trainer.iter)

    def after_step(self) -> None:
        self.step.clear()
        if self.reweighter.is_meta_step(self.trainer.iter):
            # Every rank, also one that skipped its meta step (no foreground RoI): the gather is a collective.
            # A meta step counts once per iteration in which any rank took one, as in a single process.
            ran = self.reweighter.tracker.flush(self.trainer.iter)
            self.reweighter.meta_steps = self._steps_before + int(ran)

    # --- end of training, checkpointing ---------------------------------------------------------------
    def after_train(self) -> None:
        self.roi_heads.roi_reweighter = None
        if comm.is_main_process():
            self.write_outputs()

    def write_outputs(self) -> Optional[str]:
        """Write meta_eps.json (history) and eps_by_group.png (by r/c/f group) to OUTPUT_DIR, atomically.

        Returns:
            The plot's path; None (nothing written) before the first point of the eps history.
        """
        iters, means = self.reweighter.tracker.history()
        if not iters.size:
            logger.info("meta weighting: no eps history point yet (fewer than LOG_PERIOD meta steps); no plot")
            return None
        from lt_detectron.data import class_counts, frequency_groups

        groups = frequency_groups(class_counts(self.train_datasets, source="image_count"))
        os.makedirs(self.output_dir, exist_ok=True)
        history = {
            "iterations": iters.tolist(),
            "eps_mean_per_class": [
                [None if np.isnan(v) else float(v) for v in row[: self.num_classes]] for row in means
            ],
            "groups": [str(g) for g in groups],
        }
        write_json_atomic(history, os.path.join(self.output_dir, EPS_HISTORY_NAME), indent=None)
        path = plot_eps_by_group(
            iters,
            means[:, : self.num_classes],
            groups,
            os.path.join(self.output_dir, EPS_PLOT_NAME),
            title="meta-learned conditional weights of the box classifier",
        )
        logger.info(f"meta weighting: wrote {path}")
        return path

    def state_dict(self) -> Dict[str, Any]:
        return {"reweighter": self.reweighter.state_dict(), "dev_sampler": self.dev_sampler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.reweighter.load_state_dict(state["reweighter"])
        self.dev_sampler.load_state_dict(state["dev_sampler"])


class MetaWeightingTrainerMixin:
    """`class Trainer(MetaWeightingTrainerMixin, DefaultTrainer)`: with MODEL.LT.META.ENABLED, train on the
    split without the held-out dev images and add a `MetaWeightingHook` (before the checkpointer and the
    writers). A no-op when meta weighting is off."""

    def __init__(self, cfg: CfgNode):
        super().__init__(prepare_meta_datasets(cfg))

    def build_hooks(self) -> List[HookBase]:
        hooks = super().build_hooks()
        if self.cfg.MODEL.LT.META.ENABLED:
            # Before the checkpointer (its after_step completes the iteration's eps history, which the checkpoint
            # must hold) and the writers (its scalars are written with their iteration).
            at = next(
                (i for i, h in enumerate(hooks) if isinstance(h, (PeriodicCheckpointer, PeriodicWriter))), len(hooks)
            )
            hooks.insert(at, MetaWeightingHook(self.cfg, self.model))
        return hooks
