"""Meta-learned per-RoI weights in Detectron2 training (docs/methods.md#meta-weights-in-detection;
Algorithm 1 of Jamal et al., CVPR 2020, arXiv:2003.10780).

Examples are the sampled RoIs of the box classifier; the foreground RoIs get a conditional weight
`w_y + eps` (background RoIs keep weight 1). The dev batch is a few held-out training images whose
ground-truth boxes are the RoIs; their box features come from the backbone and box head without gradient,
and the meta-gradient flows through the box predictor only. The real step replaces `loss_cls` by the
weighted mean of the predictor's `per_roi_classification_loss`.

Three pieces, usable from tools/train_net.py or any Detectron2 project with a GeneralizedRCNN-like model:
- `prepare_meta_datasets(cfg)`: registers `<train>__meta_train` / `<train>__meta_dev` (the held-out split)
  and returns a cfg that trains on the former;
- `MetaWeightingHook`: the hook (state saved with the trainer's checkpoint, eps plot after training);
- `MetaWeightingTrainerMixin`: `class Trainer(MetaWeightingTrainerMixin, DefaultTrainer)` does both.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import HookBase
from detectron2.engine.hooks import PeriodicCheckpointer, PeriodicWriter
from detectron2.layers import cat
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

from lt_detectron import losses as lt_losses
from lt_detectron.meta import DevBatchSampler, MetaReweighter, build_dev_split, plot_eps_by_group
from lt_detectron.meta.engine import batchnorm_stats_frozen, stage_two_start
from lt_detectron.meta.tracker import EpsTracker
from lt_detectron.utils import write_json_atomic

__all__ = ["prepare_meta_datasets", "MetaWeightingHook", "MetaWeightingTrainerMixin", "EPS_PLOT_NAME"]

logger = logging.getLogger(__name__)

EPS_PLOT_NAME = "eps_by_group.png"
EPS_HISTORY_NAME = "meta_eps.json"
_TRAIN_SUFFIX, _DEV_SUFFIX = "__meta_train", "__meta_dev"
_SPLIT_KEYS: Dict[str, tuple] = {}  # registered split name -> what it was made from


def _image_class_sets(dicts: Sequence[Dict[str, Any]]) -> List[List[int]]:
    return [sorted({int(a["category_id"]) for a in d.get("annotations", ()) if not a.get("iscrowd", 0)}) for d in dicts]


def prepare_meta_datasets(cfg: CfgNode) -> CfgNode:
    """Hold out the dev set D from DATASETS.TRAIN (at most DEV_PER_CLASS images per class; see
    docs/methods.md#meta-weights-in-detection).

    Registers `<names>__meta_train` and `<names>__meta_dev` (lazily split, metadata copied from the first
    training dataset) and returns a clone of `cfg` with DATASETS.TRAIN and MODEL.LT.META.DEV_DATASETS pointing
    at them, so any train loader skips the held-out images. Returns `cfg` unchanged when meta weighting is off
    or DEV_DATASETS is already set (a user-given D, or an already prepared cfg).
    """
    meta = cfg.MODEL.LT.META
    if not meta.ENABLED or len(meta.DEV_DATASETS):
        return cfg
    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("MODEL.LT.META.ENABLED needs DATASETS.TRAIN to hold out the dev set from; set DATASETS.TRAIN")
    base = "+".join(names)
    train_name, dev_name = base + _TRAIN_SUFFIX, base + _DEV_SUFFIX
    k, seed, num_classes = int(meta.DEV_PER_CLASS), int(meta.DEV_SEED), int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    # The split (and its class statistics) belong to these source registrations and split settings: a source
    # registered anew (e.g. lt_shapes under another root) or other settings give a new split.
    key = (tuple(DatasetCatalog[n] for n in names if n in DatasetCatalog.list()), k, seed, num_classes)
    if train_name not in DatasetCatalog.list() or _SPLIT_KEYS.get(train_name) != key:
        for new in (train_name, dev_name):
            if new in DatasetCatalog.list():
                DatasetCatalog.remove(new)
            if new in MetadataCatalog.list():
                MetadataCatalog.remove(new)
        _SPLIT_KEYS[train_name] = key
        cache: Dict[str, Any] = {}

        def split() -> Dict[str, Any]:
            if not cache:
                from detectron2.data import get_detection_dataset_dicts

                dicts = get_detection_dataset_dicts(list(names), filter_empty=False)
                result = build_dev_split(_image_class_sets(dicts), k, num_classes=num_classes, seed=seed, log=False)
                level = logging.WARNING if result.report.short_classes else logging.INFO
                logger.log(level, f"meta-weighting dev set held out of {list(names)}: {result.report.summary()}")
                cache.update(dicts=dicts, split=result)
            return cache

        DatasetCatalog.register(train_name, lambda: [split()["dicts"][i] for i in split()["split"].train_indices])
        DatasetCatalog.register(dev_name, lambda: [split()["dicts"][i] for i in split()["split"].dev_indices])
        source_meta = MetadataCatalog.get(names[0])
        # Not the source's class statistics: the held-out split has its own counts.
        skip = {"name", "class_stats", "cat_info_file"}
        source = {k_: v for k_, v in source_meta.as_dict().items() if k_ not in skip}
        if "class_image_count" not in source and hasattr(source_meta, "class_image_count"):  # lazily computed
            source["class_image_count"] = source_meta.class_image_count
        for new in (train_name, dev_name):
            MetadataCatalog.get(new).set(**source)
    out = cfg.clone()
    out.defrost()
    out.DATASETS.TRAIN = (train_name,)
    out.MODEL.LT.META.DEV_DATASETS = (dev_name,)
    if cfg.is_frozen():
        out.freeze()
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _GatheredEpsTracker(EpsTracker):
    """EpsTracker for multi-process runs: the eps a rank's meta step records are held back and added, together
    with every other rank's, by `flush` (a collective, called by every rank after each meta iteration). All ranks
    then hold the same history, the one in rank 0's checkpoint. In one process it records what `update` gets."""

    def __init__(self, num_classes: int, period: int):
        super().__init__(num_classes, period=period)
        self._pending: List[tuple] = []

    def update(self, eps: torch.Tensor, labels: torch.Tensor, iteration: int) -> None:
        self._pending.append((eps.detach().double().cpu(), labels.detach().long().cpu()))

    def flush(self, iteration: int) -> bool:
        """Record the held-back eps of all ranks as one update; False when no rank ran a meta step."""
        local, self._pending = self._pending, []
        parts = comm.all_gather(local) if comm.get_world_size() > 1 else [local]
        updates = [update for part in parts for update in part]
        if not updates:
            return False
        super().update(torch.cat([e for e, _ in updates]), torch.cat([y for _, y in updates]), iteration)
        return True


class MetaWeightingHook(HookBase):
    """Algorithm 1 stage 2 inside Detectron2's training loop, via forward hooks on the ROI heads.

    From iteration MODEL.LT.META.START_ITER on, each training forward (1) captures the box predictor's input
    features and scores, (2) runs one `MetaReweighter` step on the box predictor with a dev batch of held-out
    images (GT boxes as RoIs), and (3) replaces `loss_cls` with the weighted per-RoI loss. Before that, training
    is unchanged (stage 1). Its state (reweighter, dev batch order) rides in the trainer's checkpoint through
    `state_dict`; after training it writes `eps_by_group.png` and `meta_eps.json` to cfg.OUTPUT_DIR.
    """

    def __init__(self, cfg: CfgNode, model: nn.Module):
        meta = cfg.MODEL.LT.META
        if meta.MODE != "classifier":
            raise ValueError(
                f"MODEL.LT.META.MODE = {meta.MODE!r}: the Detectron2 hook meta-differentiates the box predictor only "
                "(docs/methods.md#meta-weights-in-detection); set MODE: classifier. The whole-model mode is the "
                "engine's (lt_detectron.meta.MetaReweighter) for classification."
            )
        if not len(meta.DEV_DATASETS):
            raise ValueError(
                "MODEL.LT.META.DEV_DATASETS is empty: call cfg = prepare_meta_datasets(cfg) before building the "
                "trainer (MetaWeightingTrainerMixin does), or name registered dev datasets there."
            )
        self.model = _unwrap(model)
        for attr in ("backbone", "roi_heads", "preprocess_image"):
            if not hasattr(self.model, attr):
                raise TypeError(
                    "MetaWeightingHook needs a GeneralizedRCNN-like model with "
                    f"`{attr}`; got {type(self.model).__name__}"
                )
        self.roi_heads = self.model.roi_heads
        self.predictor = self.roi_heads.box_predictor
        if not getattr(self.predictor, "per_example", False) or not hasattr(
            self.predictor, "per_roi_classification_loss"
        ):
            raise ValueError(
                f"MODEL.LT.BOX_CLASSIFIER = {cfg.MODEL.LT.BOX_CLASSIFIER!r} ({type(self.predictor).__name__}) has no "
                "per-RoI classification loss (per_example is False), so it cannot be meta-weighted; use one of "
                "softmax, focal, ldam, balanced_softmax, lade (or cb / cb_focal, whose class weights then multiply "
                "w_y)."
            )
        if getattr(self.predictor, "class_weight", None) is not None:
            logger.warning(
                f"MODEL.LT.BOX_CLASSIFIER = {cfg.MODEL.LT.BOX_CLASSIFIER!r} already weights its loss by class; "
                "the meta weights w_y + eps multiply it (Algorithm 1 assumes an unweighted loss such as "
                "'softmax')."
            )
        self.num_classes = int(self.roi_heads.num_classes)
        self.output_dir = cfg.OUTPUT_DIR
        self.train_datasets = tuple(cfg.DATASETS.TRAIN)

        from lt_detectron.modeling.class_counts import read_class_counts

        zero_policy = "exclude" if cfg.MODEL.LT.ZERO_COUNT_POLICY == "warn" else "error"
        fg_weights = lt_losses.class_weights(
            read_class_counts(cfg),
            kind="effective_number",
            beta=meta.BETA,
            zero_policy=zero_policy,
            dtype=torch.float32,
        )
        # INNER_LR <= 0: eta follows the optimizer's current lr (Jamal et al. 2020 use the model's lr for the
        # virtual step).
        self.follow_lr = meta.INNER_LR <= 0
        # START_ITER < 0: the meta stage starts at the first lr decay (Jamal et al. 2020 §5.3), min(SOLVER.STEPS).
        start_iter = stage_two_start(meta.START_ITER, cfg.SOLVER.STEPS)
        # Background RoIs are not meta examples: weight 1, as in the unweighted detection loss.
        self.reweighter = MetaReweighter(
            torch.cat([fg_weights, fg_weights.new_ones(1)]),
            inner_lr=cfg.SOLVER.BASE_LR if self.follow_lr else meta.INNER_LR,
            eps_lr=meta.EPS_LR,
            start_iter=start_iter,
            l2rw=meta.L2RW,
            track_period=meta.LOG_PERIOD,
        )
        # Multi-process: each rank meta-steps on its own batch and dev batch; the eps history is gathered.
        self.reweighter.tracker = _GatheredEpsTracker(self.reweighter.num_classes, period=meta.LOG_PERIOD)
        self._steps_before = 0

        self.dev_dicts = [d for name in meta.DEV_DATASETS for d in DatasetCatalog.get(name)]
        # Dev images at test scale, no flip; is_train=True keeps the annotations (GT boxes are the dev RoIs).
        self.dev_mapper = DatasetMapper(
            is_train=True,
            augmentations=[T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)],
            image_format=cfg.INPUT.FORMAT,
        )
        # DEV_BATCH_SIZE images per rank: one sampler, identical on every rank (so rank 0's checkpoint resumes all),
        # draws them for all ranks and each rank takes its share.
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        self.dev_sampler = DevBatchSampler(
            range(len(self.dev_dicts)), meta.DEV_BATCH_SIZE * self.world_size, seed=meta.DEV_SEED
        )
        self._dev_batch: Optional[tuple] = None
        self._captured: Optional[tuple] = None
        self._in_meta_step = False
        self._handles = [
            self.predictor.register_forward_hook(self._capture_predictor_io),
            self.roi_heads.register_forward_hook(self._reweight_losses),
        ]
        logger.info(
            f"meta weighting: {len(self.dev_dicts)} dev images from {list(meta.DEV_DATASETS)}, meta steps from "
            f"iteration {start_iter}, eta={'optimizer lr' if self.follow_lr else meta.INNER_LR}, "
            f"tau={meta.EPS_LR}, L2RW={meta.L2RW}"
        )

    # --- per iteration --------------------------------------------------------------------------------
    def before_step(self) -> None:
        self._captured = None
        self._dev_batch = None
        if self.reweighter.is_meta_step(self.trainer.iter):
            if self.follow_lr:
                self.reweighter.inner_lr = float(self.trainer.optimizer.param_groups[0]["lr"])
            self._steps_before = self.reweighter.meta_steps
            self._dev_batch = self._dev_box_features()

    def after_step(self) -> None:
        self._dev_batch = self._captured = None
        if self.reweighter.is_meta_step(self.trainer.iter):
            # Every rank, also one that skipped its meta step (no foreground RoI): the gather is a collective.
            # A meta step counts once per iteration in which any rank took one, as in a single process.
            ran = self.reweighter.tracker.flush(self.trainer.iter)
            self.reweighter.meta_steps = self._steps_before + int(ran)

    @torch.no_grad()
    def _dev_box_features(self) -> Optional[tuple]:
        """Box-head features of the dev batch's GT boxes (no gradient, running BN stats untouched)."""
        batch = self.dev_sampler.next_batch()[self.rank :: self.world_size]
        inputs = [self.dev_mapper(dict(self.dev_dicts[i])) for i in batch]
        instances = [x["instances"].to(self.model.device) for x in inputs]
        if sum(len(i) for i in instances) == 0:
            return None
        with batchnorm_stats_frozen(self.model):
            images = self.model.preprocess_image(inputs)
            features = self.model.backbone(images.tensor)
            pooled = self.roi_heads.box_pooler(
                [features[f] for f in self.roi_heads.box_in_features], [i.gt_boxes for i in instances]
            )
            box_features = self.roi_heads.box_head(pooled)
        return box_features, cat([i.gt_classes for i in instances])

    def _capture_predictor_io(self, module: nn.Module, args: tuple, output: Any) -> None:
        if module.training and not self._in_meta_step and self._dev_batch is not None:
            scores = output[0] if isinstance(output, (tuple, list)) else output
            self._captured = (args[0], scores)

    def _reweight_losses(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if not module.training or self._dev_batch is None or self._captured is None:
            return None
        proposals, losses = output
        if "loss_cls" not in losses:
            raise KeyError(
                f"MetaWeightingHook: the ROI heads returned no 'loss_cls' (got {sorted(losses)}); cannot reweight"
            )
        box_features, scores = self._captured
        self._captured = None
        gt_classes = cat([p.gt_classes for p in proposals]) if proposals else scores.new_zeros(0, dtype=torch.long)
        if gt_classes.shape[0] != scores.shape[0]:
            raise RuntimeError(
                f"MetaWeightingHook: the box predictor scored {scores.shape[0]} RoIs but the ROI heads sampled "
                f"{gt_classes.shape[0]}; the hook supports heads that call the box predictor once per training "
                "forward (StandardROIHeads / LTROIHeads), not cascades"
            )
        foreground = gt_classes < self.num_classes
        if not foreground.any():
            return None  # no foreground RoI in this batch: nothing to weight, the plain loss stands
        predictor = self.predictor

        def per_roi_loss(predictions: Any, targets: torch.Tensor) -> torch.Tensor:
            return predictor.per_roi_classification_loss(predictions[0], targets)

        dev_features, dev_classes = self._dev_batch
        self._in_meta_step = True
        try:
            result = self.reweighter.step(
                predictor,
                per_roi_loss,
                box_features.detach(),
                gt_classes,
                dev_features,
                dev_classes,
                iteration=self.trainer.iter,
                meta_mask=foreground,
            )
        finally:
            self._in_meta_step = False
        weighted = self.reweighter.weighted_loss(predictor.per_roi_classification_loss(scores, gt_classes), result)
        losses = dict(losses)
        losses["loss_cls"] = weighted * predictor.loss_weight.get("loss_cls", 1.0)
        eps = result.eps[foreground]
        get_event_storage().put_scalars(
            **{
                "meta/eps_mean": float(eps.mean()),
                "meta/eps_abs_mean": float(eps.abs().mean()),
                "meta/weight_min": float(result.weights[foreground].min()),
                "meta/dev_loss": float(result.dev_loss),
            },
            smoothing_hint=True,
        )
        return proposals, losses

    # --- end of training, checkpointing ---------------------------------------------------------------
    def after_train(self) -> None:
        for handle in self._handles:
            handle.remove()
        if comm.is_main_process():
            self.write_outputs()

    def write_outputs(self) -> Optional[str]:
        """Write meta_eps.json (history) and eps_by_group.png (by r/c/f group) to OUTPUT_DIR, atomically."""
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
