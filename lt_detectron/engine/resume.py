"""Exact resume for Detectron2 training: the data stream and the random numbers continue where they stopped.

Detectron2's `--resume` restores the model, optimizer, scheduler and iteration, but its training sampler starts
its index stream from the beginning again and the random generators are seeded once at start-up, so a resumed
run sees other images, flips and sampled RoIs than the uninterrupted one. LTTrainer adds:
- `ResumableSampler`: wraps the training sampler and skips the indices this rank consumed before the checkpoint
  (the samplers' streams are deterministic given their seed; only indices are generated, no image is read);
- `IterationSeedHook`: re-seeds Python, NumPy and torch (CPU and CUDA) from (seed, rank, iteration) before every
  iteration and again when the model's forward starts, so data augmentation and RPN / RoI sampling do not
  depend on how many iterations this process has run.
Together, with cfg.SEED >= 0 (a negative SEED draws one, kept in the checkpoint), DATALOADER.NUM_WORKERS 0 and
batches of consecutive indices (ASPECT_RATIO_GROUPING off, or images of one aspect-ratio group such as
lt_shapes), a stopped and resumed run trains the same weights as an uninterrupted one, with any number of
processes. Data-loader workers draw augmentations from their own generators, which restart on resume: with
workers the image order is still the same, the random flips are not.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import build_detection_train_loader
from detectron2.data.build import _train_loader_from_config
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "build_resumable_train_loader", "IterationSeedHook", "iteration_seed"]


class ResumableSampler(Sampler):
    """A training sampler whose stream can start after the first `start_iteration` batches of this rank."""

    def __init__(self, sampler: Sampler, images_per_batch: int):
        if images_per_batch < 1:
            raise ValueError(f"ResumableSampler: images_per_batch must be >= 1; got {images_per_batch}")
        self.sampler = sampler
        self.images_per_batch = int(images_per_batch)
        self.start_iteration = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start_iteration * self.images_per_batch, None)


def build_resumable_train_loader(cfg: CfgNode):
    """Detectron2's train loader for `cfg` with its sampler wrapped in a `ResumableSampler`.

    The loader carries the wrapper as `resumable_sampler`; set its `start_iteration` before the first batch.
    """
    kwargs = _train_loader_from_config(cfg)
    world_size = comm.get_world_size()
    total = int(kwargs["total_batch_size"])
    if total % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes ({world_size}).")
    _log_repeat_factors(cfg, kwargs["dataset"], kwargs["sampler"])
    sampler = ResumableSampler(kwargs["sampler"], total // world_size)
    kwargs["sampler"] = sampler
    loader = build_detection_train_loader(**kwargs)
    loader.resumable_sampler = sampler
    return loader


def repeat_factors_of(sampler: Sampler) -> Optional[torch.Tensor]:
    """The per-image repeat factors a Detectron2 RepeatFactorTrainingSampler draws with, or None for another sampler."""
    if not isinstance(sampler, RepeatFactorTrainingSampler):
        return None
    return sampler._int_part + sampler._frac_part  # how the sampler stores its factors


def _log_repeat_factors(cfg: CfgNode, dataset, sampler: Sampler) -> None:
    """At start-up, what repeat factor sampling does to an epoch (a silent factor bug costs APr unnoticed)."""
    factors = repeat_factors_of(sampler)
    if factors is None or not comm.is_main_process():
        return
    from lt_detectron.data.stats import format_repeat_factor_summary, repeat_factor_summary

    summary = repeat_factor_summary(list(dataset), factors.tolist(), cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    sqrt = cfg.DATALOADER.get("REPEAT_SQRT", True)
    logging.getLogger(__name__).info(format_repeat_factor_summary(summary, cfg.DATALOADER.REPEAT_THRESHOLD, sqrt))


def iteration_seed(base_seed: int, rank: int, iteration: int, stream: int = 0) -> int:
    """A 31-bit seed for (base seed, rank, iteration, stream), well spread by NumPy's SeedSequence."""
    entropy = [int(base_seed) % 2**32, int(rank), int(iteration), int(stream)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


class IterationSeedHook(HookBase):
    """Re-seed every generator from (seed, rank, iteration) before each iteration and again as the model's training
    forward starts; the seed rides in the checkpoint.

    Must run before the other hooks' `before_step` (LTTrainer puts it first). The first seed governs the data
    (augmentations run in the main process without workers); the second the model (RPN / RoI sampling), after
    whatever the data loader drew: its first batch after a (re)start creates the loader's iterator, which draws
    from torch's generator in that iteration only.
    """

    def __init__(self, seed: int):
        # A negative cfg.SEED means "random": draw one (the same on every rank) and keep it in the checkpoint.
        self.seed = int(seed) if seed >= 0 else int(comm.shared_random_seed())
        self._handle = None

    def _seed(self, stream: int) -> None:
        seed_all_rng(iteration_seed(self.seed, comm.get_rank(), self.trainer.iter, stream))

    def _seed_forward(self, module, args) -> None:
        if module.training:
            self._seed(stream=1)

    def before_train(self) -> None:
        self._handle = self.trainer.model.register_forward_pre_hook(self._seed_forward)

    def after_train(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def before_step(self) -> None:
        self._seed(stream=0)

    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = int(state["seed"])
