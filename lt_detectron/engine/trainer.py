"""`LTTrainer`: Detectron2's DefaultTrainer with LVIS evaluation at 300 detections and atomic checkpoints."""

from __future__ import annotations

import logging
import os
from typing import Optional

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.engine.hooks import EvalHook
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, LVISEvaluator
from detectron2.utils import comm

from lt_detectron.data import dataset_dicts_loaded_once, release_loaded_dataset_dicts
from lt_detectron.utils.checkpoint import AtomicCheckpointerMixin
from lt_detectron.utils.io import remove_stale_temporaries

from .distributed import broadcast_buffers_from_main, cpu_aware_ddp
from .meta_hook import MetaWeightingTrainerMixin
from .resume import IterationSeedHook, build_resumable_train_loader

__all__ = ["LTTrainer", "AtomicDetectionCheckpointer", "build_lt_evaluator"]

logger = logging.getLogger(__name__)


class AtomicDetectionCheckpointer(AtomicCheckpointerMixin, DetectionCheckpointer):
    """DetectionCheckpointer whose `save` and `last_checkpoint` tag are atomic (fvcore writes in place), through
    Detectron2's path manager (see lt_detectron.utils.checkpoint, shared with the classification trainer).

    An interrupted save leaves the previous checkpoint and tag intact instead of a truncated `.pth`
    that `--resume` would then try to load.
    """


def build_lt_evaluator(cfg, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
    """LVIS-format datasets: the fast LVIS evaluator (TEST.LT_EVALUATOR "fast": lvis-api's numbers, per-class CSV and
    plot, optional Fixed AP) or Detectron2's LVISEvaluator ("lvis-api"); COCO-format ones: COCOEvaluator."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    if evaluator_type == "lvis":
        backend = cfg.TEST.get("LT_EVALUATOR", "fast")
        if backend == "lvis-api":
            return LVISEvaluator(
                dataset_name, output_dir=output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE
            )
        if backend == "fast":
            from lt_detectron.evaluation.detectron2_evaluator import FastLVISEvaluator

            return FastLVISEvaluator(
                dataset_name,
                output_dir=output_folder,
                fixed_ap=bool(cfg.TEST.get("LT_FIXED_AP", False)),
                fixed_ap_k=int(cfg.TEST.get("LT_FIXED_AP_K", 10000)),
                workers=int(cfg.TEST.get("LT_EVAL_WORKERS", 0)) or None,
                train_datasets=tuple(cfg.DATASETS.TRAIN),
                shards=bool(cfg.TEST.get("LT_EVAL_SHARDS", True)),
            )
        raise ValueError(f"TEST.LT_EVALUATOR is {backend!r}; use 'fast' or 'lvis-api'.")
    if evaluator_type == "coco":
        return COCOEvaluator(dataset_name, output_dir=output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)
    raise NotImplementedError(
        f"Dataset {dataset_name!r} has evaluator_type={evaluator_type!r}; LTTrainer evaluates 'lvis' and 'coco' "
        f"datasets. Set MetadataCatalog.get({dataset_name!r}).evaluator_type when registering it, "
        f"or remove it from DATASETS.TEST."
    )


class _LoaderBeforeModel:
    """Builds the train loader before DefaultTrainer.__init__ builds the model. The annotation file's parse and the
    loader's serialized copy are the start-up's memory peak, which stock Detectron2 reaches with the model's weights
    already built. DefaultTrainer.__init__ then gets that loader (an instance attribute shadows the classmethod), and
    the dataset lists are released before the DDP wrapper is built. After the meta-weighting mixin in the MRO: the
    loader is built from the configuration it prepared."""

    def __init__(self, cfg):
        loader = type(self).build_train_loader(cfg)

        def built_loader(_cfg):
            release_loaded_dataset_dicts()  # the model has its class statistics; the loader its copy
            return loader

        self.build_train_loader = built_loader
        try:
            super().__init__(cfg)
        finally:
            del self.build_train_loader


class LTTrainer(MetaWeightingTrainerMixin, _LoaderBeforeModel, DefaultTrainer):
    """DefaultTrainer for lt-detectron.

    Inherits from Detectron2: the train loader (cfg.DATALOADER.SAMPLER_TRAIN = RepeatFactorTrainingSampler with
    cfg.DATALOADER.REPEAT_THRESHOLD is handled by `build_detection_train_loader`), the SGD optimizer and LR
    schedule, gradient clipping, and the default writers (console with ETA, metrics.json, TensorBoard events).
    Adds: LVIS evaluation at 300 detections per image, atomic checkpoints, and (MODEL.LT.META.ENABLED) the
    meta-learned per-example weights (docs/methods.md#meta-learned-conditional-weights) through
    `MetaWeightingTrainerMixin`.

    Multi-process (see docs/distributed.md): a CPU model is wrapped in DDP without `device_ids` (gloo), and
    `--resume` is exact with any number of loader workers (the sampler skips the consumed indices, each sample is
    augmented from (SEED, rank, its stream position), every iteration re-seeds the model's sampling from (SEED, rank,
    iteration): lt_detectron.engine.resume).
    """

    last_eval_results: Optional[dict] = None  # the latest DATASETS.TEST evaluation (set by the EvalHook)

    def __init__(self, cfg):
        if comm.is_main_process():  # checkpoints or reports of a run killed mid-write
            remove_stale_temporaries(cfg.OUTPUT_DIR)
        # One load of each training set serves the loader, the repeat factors and the model's class statistics
        # (stock Detectron2 loads it once, for the loader); the lists are released once the model is built.
        with cpu_aware_ddp(), dataset_dicts_loaded_once():
            super().__init__(cfg)

    def build_hooks(self):
        # DefaultTrainer.__init__ creates the checkpointer just before calling build_hooks; swap in the atomic
        # one here so the PeriodicCheckpointer hook and resume_or_load both use it.
        old = self.checkpointer
        self.checkpointer = AtomicDetectionCheckpointer(
            old.model, old.save_dir, save_to_disk=old.save_to_disk, **old.checkpointables
        )
        # Detectron2's EvalHook keeps its results in a private attribute; ours keeps them in `last_eval_results`.
        stock = super().build_hooks()
        own = [
            EvalHook(self.cfg.TEST.EVAL_PERIOD, self._test_and_keep_results) if isinstance(h, EvalHook) else h
            for h in stock
        ]
        # First: it re-seeds before every other hook's before_step and the iteration's data and forward.
        return [IterationSeedHook(self.cfg.SEED), *own]

    def _test_and_keep_results(self):
        self.last_eval_results = self.test(self.cfg, self.model)
        return self.last_eval_results

    @classmethod
    def build_train_loader(cls, cfg):
        """Detectron2's train loader, whose sampler can start where a checkpoint stopped (exact --resume)."""
        return build_resumable_train_loader(cfg)

    def resume_or_load(self, resume: bool = True) -> None:
        super().resume_or_load(resume=resume)
        sampler = getattr(self._trainer.data_loader, "resumable_sampler", None)
        if sampler is not None:  # a subclass may build its own loader
            sampler.start_iteration = self.start_iter

    def train(self):
        """Train, then return the final evaluation results (Detectron2's EvalHook evaluates DATASETS.TEST after the
        last iteration; DefaultTrainer.train only returns them when TEST.EXPECTED_RESULTS is set)."""
        results = super().train()
        return results if results is not None else self.last_eval_results

    @classmethod
    def build_model(cls, cfg):
        from .setup import register_lt_components

        register_lt_components()  # our backbone / ROI heads must be in Detectron2's registries
        return super().build_model(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
        return build_lt_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Detectron2's test (each rank runs its shard, the evaluator gathers to rank 0), with rank 0's BatchNorm
        statistics on every rank so the shards are scored by the saved model."""
        broadcast_buffers_from_main(model)
        return super().test(cfg, model, evaluators)
