"""The per-RoI meta step of meta-weighting in detection (docs/methods.md#meta-weights-in-detection; Algorithm 1 of
Jamal et al., CVPR 2020, arXiv:2003.10780, lines 8-14).

`RoIMetaStep` is LTROIHeads' `roi_reweighter`. The examples are the sampled RoIs; the foreground ones get the weight
`w_y + eps` (background RoIs keep weight 1). The dev batch is a few held-out training images whose ground-truth boxes
are the RoIs; their box features come from the backbone and box head without gradient, and the meta-gradient flows
through the box predictor only. The box predictor applies the returned weights in its own `losses(...,
roi_weights=)`; `MetaWeightingHook` decides in which iterations the step runs.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.layers import cat
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils import comm
from torch import Tensor, nn

from lt_detectron import losses as lt_losses
from lt_detectron.meta import DevBatchSampler, MetaReweighter
from lt_detectron.meta.engine import batchnorm_stats_frozen, stage_two_start
from lt_detectron.meta.tracker import EpsTracker
from lt_detectron.modeling.class_counts import read_class_counts
from lt_detectron.modeling.predictor_utils import gt_classes_of, put_scalars
from lt_detectron.utils.distributed import all_reduce_sum

__all__ = ["RoIMetaStep"]

logger = logging.getLogger(__name__)


class _GatheredEpsTracker(EpsTracker):
    """EpsTracker for multi-process runs: the eps a rank's meta steps record are held back as per-class sums and counts,
    and `flush` (called by every rank after each meta iteration) records them, summed over processes by `reduce`, as one
    update. With `reduce` a sum over processes (`all_reduce_sum`, a collective) every rank holds the same history, the
    one in rank 0's checkpoint; without it the history is this process's."""

    def __init__(self, num_classes: int, period: int, reduce: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(num_classes, period=period)
        self.reduce = reduce
        self._pending = torch.zeros(2 * num_classes + 1, dtype=torch.float64)  # [sums, counts, number of updates]

    def update(self, eps: Tensor, labels: Tensor, iteration: int) -> None:
        sums, counts = self.class_sums(eps, labels)
        self._pending += torch.cat(
            [torch.from_numpy(sums), torch.from_numpy(counts).double(), torch.ones(1, dtype=torch.float64)]
        )

    def flush(self, iteration: int) -> bool:
        """Record the held-back eps of all ranks as one update (with `reduce` a collective: every rank calls it).

        Args:
            iteration: the training iteration, recorded when this update closes a point of the history.

        Returns:
            False when no rank recorded any eps since the last flush.
        """
        pending, self._pending = self._pending, torch.zeros_like(self._pending)
        total = (pending if self.reduce is None else self.reduce(pending)).cpu().numpy()
        if total[-1] == 0:
            return False
        c = self.num_classes
        self.add_sums(total[:c], total[c : 2 * c].astype("int64"), iteration)
        return True


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class RoIMetaStep:
    """Per-RoI weights `w_y + eps` from one `MetaReweighter` step on the box predictor (the module docstring).

    Each `load_dev_batch` serves one training forward (another one in the same iteration, e.g. PreciseBN's, stays
    unweighted); otherwise the step is idle (returns None). Build it with `from_config`.

    Args:
        model: the GeneralizedRCNN-like model (its backbone and box head give the dev RoIs' features).
        reweighter: the MetaReweighter over the C+1 classes (background last, weight 1).
        dev_dicts: the dev images, as Detectron2 dataset dicts.
        dev_mapper: a dev dict -> model input with `instances` (the ground-truth boxes are the dev RoIs).
        dev_sampler: draws the dev batch of all ranks; this rank takes every `world_size`-th image from `rank` on.
    """

    def __init__(
        self,
        model: nn.Module,
        reweighter: MetaReweighter,
        dev_dicts: Sequence[dict],
        dev_mapper: Callable[[dict], dict],
        dev_sampler: DevBatchSampler,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.model, self.roi_heads = model, model.roi_heads
        self.reweighter, self.dev_sampler = reweighter, dev_sampler
        self.dev_dicts, self.dev_mapper = list(dev_dicts), dev_mapper
        self.rank, self.world_size = rank, world_size
        self.num_classes = int(self.roi_heads.num_classes)
        self.iteration = 0
        self._dev_batch: Optional[tuple] = None

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module) -> "RoIMetaStep":
        """The step for MODEL.LT.META, checked against the model.

        Args:
            cfg: a config prepared by `prepare_meta_datasets` (MODEL.LT.META.DEV_DATASETS set).
            model: the model being trained, with LTROIHeads and a per-RoI box classifier (DDP-wrapped or not).

        Returns:
            The step, with a gathered eps history (the same on every rank) and one dev sampler shared by all ranks.
        """
        meta = cfg.MODEL.LT.META
        model = _check_model(cfg, _unwrap(model))
        zero_policy = "exclude" if cfg.MODEL.LT.ZERO_COUNT_POLICY == "warn" else "error"
        fg_weights = lt_losses.class_weights(
            read_class_counts(cfg),
            kind="effective_number",
            beta=meta.BETA,
            zero_policy=zero_policy,
            dtype=torch.float32,
        )
        # Background RoIs are not meta examples: weight 1, as in the unweighted detection loss. INNER_LR <= 0: the hook
        # sets eta to the optimizer's lr each step; START_ITER < 0: the first lr decay (Jamal et al. 2020 §5.3).
        reweighter = MetaReweighter(
            torch.cat([fg_weights, fg_weights.new_ones(1)]),
            inner_lr=cfg.SOLVER.BASE_LR if meta.INNER_LR <= 0 else meta.INNER_LR,
            eps_lr=meta.EPS_LR,
            start_iter=stage_two_start(meta.START_ITER, cfg.SOLVER.STEPS),
            l2rw=meta.L2RW,
            track_period=meta.LOG_PERIOD,
        )
        # Multi-process: each rank meta-steps on its own batch and dev batch; the eps history is summed over ranks.
        reweighter.tracker = _GatheredEpsTracker(reweighter.num_classes, meta.LOG_PERIOD, reduce=all_reduce_sum)
        dev_dicts = [d for name in meta.DEV_DATASETS for d in DatasetCatalog.get(name)]
        # Dev images at test scale, no flip; is_train=True keeps the annotations (GT boxes are the dev RoIs).
        dev_mapper = DatasetMapper(
            is_train=True,
            augmentations=[T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)],
            image_format=cfg.INPUT.FORMAT,
        )
        # DEV_BATCH_SIZE images per rank, drawn for all ranks by one sampler identical on every rank (so rank 0's
        # checkpoint resumes all).
        rank, world_size = comm.get_rank(), comm.get_world_size()
        sampler = DevBatchSampler(range(len(dev_dicts)), meta.DEV_BATCH_SIZE * world_size, seed=meta.DEV_SEED)
        logger.info(
            f"meta weighting: {len(dev_dicts)} dev images from {list(meta.DEV_DATASETS)}, meta steps from iteration "
            f"{reweighter.start_iter}, eta={'optimizer lr' if meta.INNER_LR <= 0 else meta.INNER_LR}, "
            f"tau={meta.EPS_LR}, L2RW={meta.L2RW}"
        )
        return cls(model, reweighter, dev_dicts, dev_mapper, sampler, rank, world_size)

    def load_dev_batch(self, iteration: int) -> None:
        """Draw the next dev batch and compute its box features, for the training forward of `iteration`."""
        self.iteration = iteration
        self._dev_batch = self._dev_box_features()

    def clear(self) -> None:
        """Idle until the next `load_dev_batch`."""
        self._dev_batch = None

    @torch.no_grad()
    def _dev_box_features(self) -> Optional[tuple]:
        """Box-head features of the dev batch's GT boxes (no gradient, running BN stats untouched)."""
        batch = self.dev_sampler.next_batch()[self.rank :: self.world_size]
        inputs = [self.dev_mapper(dict(self.dev_dicts[i])) for i in batch]
        instances = [x["instances"].to(self.model.device) for x in inputs]
        if sum(len(i) for i in instances) == 0:
            return None
        heads = self.roi_heads
        with batchnorm_stats_frozen(self.model):
            features = self.model.backbone(self.model.preprocess_image(inputs).tensor)
            pooled = heads.box_pooler([features[f] for f in heads.box_in_features], [i.gt_boxes for i in instances])
            box_features = heads.box_head(pooled)
        return box_features, cat([i.gt_classes for i in instances])

    def __call__(
        self, predictor: FastRCNNOutputLayers, box_features: Tensor, predictions: Any, proposals: List[Instances]
    ) -> Optional[Tensor]:
        """The weights of the sampled RoIs (LTROIHeads' `roi_reweighter` interface).

        Args:
            predictor: the box predictor (`per_example`, with `per_roi_classification_loss`); meta-differentiated.
            box_features: Tensor[R, d], the box-head features of the sampled RoIs.
            predictions: the predictor's outputs on `box_features` (unused: the step runs its own virtual forwards).
            proposals: the sampled RoIs with `gt_classes`.

        Returns:
            Tensor[R] (detached) of `w_y + eps`, 1 for background RoIs; None when idle or without a foreground RoI
            (the plain loss stands).
        """
        gt_classes = gt_classes_of(proposals, box_features.device)
        foreground = gt_classes < self.num_classes
        dev_batch, self._dev_batch = self._dev_batch, None
        if dev_batch is None or not foreground.any():
            return None

        def per_roi_loss(outputs: Any, targets: Tensor) -> Tensor:
            return predictor.per_roi_classification_loss(outputs[0], targets)

        dev_features, dev_classes = dev_batch
        result = self.reweighter.step(
            predictor,
            per_roi_loss,
            box_features.detach(),
            gt_classes,
            dev_features,
            dev_classes,
            iteration=self.iteration,
            meta_mask=foreground,
        )
        eps = result.eps[foreground]
        put_scalars(
            **{
                "meta/eps_mean": eps.mean(),
                "meta/eps_abs_mean": eps.abs().mean(),
                "meta/weight_min": result.weights[foreground].min(),
                "meta/dev_loss": result.dev_loss,
            }
        )
        return result.weights


def _check_model(cfg: CfgNode, model: nn.Module) -> nn.Module:
    """`model` if it can be meta-weighted under `cfg`, else a ValueError / TypeError that says what to change."""
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
    for attr in ("backbone", "roi_heads", "preprocess_image"):
        if not hasattr(model, attr):
            raise TypeError(
                f"MetaWeightingHook needs a GeneralizedRCNN-like model with `{attr}`; got {type(model).__name__}"
            )
    if not hasattr(model.roi_heads, "roi_reweighter"):
        raise TypeError(
            f"MetaWeightingHook needs ROI heads that take per-RoI weights (MODEL.ROI_HEADS.NAME 'LTROIHeads'); got "
            f"{type(model.roi_heads).__name__}"
        )
    predictor = model.roi_heads.box_predictor
    if not getattr(predictor, "per_example", False):
        raise ValueError(
            f"MODEL.LT.BOX_CLASSIFIER = {cfg.MODEL.LT.BOX_CLASSIFIER!r} ({type(predictor).__name__}) has no "
            "per-RoI classification loss (per_example is False), so it cannot be meta-weighted; use one of "
            "softmax, focal, ldam, balanced_softmax, lade, seesaw (or cb / cb_focal, whose class weights then "
            "multiply w_y)."
        )
    if getattr(predictor, "class_weight", None) is not None:
        logger.warning(
            f"MODEL.LT.BOX_CLASSIFIER = {cfg.MODEL.LT.BOX_CLASSIFIER!r} already weights its loss by class; the meta "
            "weights w_y + eps multiply it (Algorithm 1 assumes an unweighted loss such as 'softmax')."
        )
    return model
