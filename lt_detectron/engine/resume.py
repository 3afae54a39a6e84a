"""Exact resume for Detectron2 training: the data stream and the random numbers continue where they stopped.

Detectron2's `--resume` restores the model, optimizer, scheduler and iteration, but its training sampler starts
its index stream from the beginning again and the random generators are seeded once at start-up (and once per
data-loader worker), so a resumed run sees other images, flips and sampled RoIs than the uninterrupted one.
LTTrainer adds:
- `ResumableSampler`: wraps the training sampler and skips the indices this rank consumed before the checkpoint
  (the samplers' streams are deterministic given their seed; only indices are generated, no image is read);
- `SeededSampleStream`: maps each sample (DatasetMapper's flips, resize choices, ...) right after re-seeding
  Python, NumPy and torch from (seed, rank, the sample's position in this rank's stream), in whichever process
  maps it, and hands the samples to the loader in stream order whatever the number of workers;
- `IterationSeedHook`: re-seeds Python, NumPy and torch (CPU and CUDA) from (seed, rank, iteration) before every
  iteration (for the other hooks) and again when the model's forward starts (RPN / RoI sampling), so neither
  depends on how many iterations this process has run.

One scheme for every DATALOADER.NUM_WORKERS, 0 included: a sample's augmentation depends on its position only,
not on which process maps it, so 0, 1 and 2 workers train the same weights. With cfg.SEED >= 0 (a negative SEED
draws one, kept in the checkpoint) and batches of consecutive stream positions (ASPECT_RATIO_GROUPING off, or
images of one aspect-ratio group such as lt_shapes), a stopped and resumed run trains the same weights as an
uninterrupted one, with any number of processes and loader workers. Mixed aspect-ratio groups are paired by
arrival in Detectron2's grouping buffers, which start empty on resume: the same data distribution, other pairs.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetFromList, build_detection_train_loader
from detectron2.data.build import _train_loader_from_config
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from torch.utils.data import IterableDataset, Sampler, get_worker_info

__all__ = [
    "ResumableSampler",
    "SeededSampleStream",
    "build_resumable_train_loader",
    "IterationSeedHook",
    "iteration_seed",
]

logger = logging.getLogger(__name__)

# iteration_seed streams: 0 and 1 are IterationSeedHook's (before the step, at the forward); 2 and 3 are a
# sample's (its mapping, and the replacement images drawn when the mapper rejects it).
SAMPLE_STREAM = 2
REPLACEMENT_STREAM = 3


class ResumableSampler(Sampler):
    """A training sampler whose stream can start after the first `start_iteration` batches of this rank."""

    def __init__(self, sampler: Sampler, images_per_batch: int):
        if images_per_batch < 1:
            raise ValueError(f"ResumableSampler: images_per_batch must be >= 1; got {images_per_batch}")
        self.sampler = sampler
        self.images_per_batch = int(images_per_batch)
        self.start_iteration = 0

    @property
    def start_position(self) -> int:
        """The position in this rank's full stream (0 = its first index ever) of the first index `__iter__` yields."""
        return self.start_iteration * self.images_per_batch

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start_position, None)

    def positions(self) -> Iterator[Tuple[int, int]]:
        """(position in this rank's full stream, dataset index) pairs from `start_position` on."""
        return enumerate(iter(self), start=self.start_position)


def _seed_sample_generators(seed: int) -> None:
    # The mapper runs on the CPU; the CUDA generators belong to the forward, which IterationSeedHook seeds.
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)


class SeededSampleStream(IterableDataset):
    """This rank's training samples, each mapped under generators seeded from (seed, rank, stream position).

    Handed to Detectron2's loader as an iterable dataset (in place of its MapDataset and ToIterableDataset): with
    W > 1 loader workers, worker w maps the chunks of `chunk_size` consecutive positions whose number, counted
    from the (resumed) start, is w modulo W. PyTorch's loader takes one item from each worker in turn, so the
    items come out in stream order when an item is a chunk: `chunk_size` is the per-rank batch size when the
    loader batches in the workers, 1 when it yields single samples (aspect-ratio grouping).

    A mapper may return None to reject a sample (as with Detectron2's MapDataset): another image, drawn from a
    generator seeded by the same position, takes its place; after `max_attempts` rejections in a row it raises.
    `seed` must be set before the first iteration (IterationSeedHook does it in before_train).
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        mapper: Callable[[Any], Any],
        sampler: ResumableSampler,
        chunk_size: int,
        rank: int = 0,
        seed: Optional[int] = None,
        max_attempts: int = 50,
    ):
        if chunk_size < 1 or max_attempts < 1:
            raise ValueError(
                f"SeededSampleStream: chunk_size and max_attempts must be >= 1; got {chunk_size}, {max_attempts}"
            )
        if len(dataset) == 0:
            raise ValueError("SeededSampleStream: the training dataset is empty")
        self.dataset = dataset
        self.mapper = mapper
        self.sampler = sampler
        self.chunk_size = int(chunk_size)
        self.rank = int(rank)
        self.seed = seed
        self.max_attempts = int(max_attempts)

    def __iter__(self) -> Iterator[Any]:
        if self.seed is None:
            raise RuntimeError(
                "SeededSampleStream: no seed set; set `.seed` before iterating (LTTrainer's IterationSeedHook sets "
                "it in before_train)"
            )
        pairs = self.sampler.positions()
        worker = get_worker_info()
        if worker is not None and worker.num_workers > 1:
            # Every worker walks the whole index stream (indices only, cheap) and maps its share of it.
            first, share, workers = self.sampler.start_position, worker.id, worker.num_workers
            pairs = (p for p in pairs if ((p[0] - first) // self.chunk_size) % workers == share)
        for position, index in pairs:
            yield self.map(position, index)

    def map(self, position: int, index: int) -> Any:
        """The mapped sample at `position` of this rank's stream (dataset index `index`), the same in any process."""
        _seed_sample_generators(iteration_seed(self.seed, self.rank, position, SAMPLE_STREAM))
        replacements: Optional[random.Random] = None
        for attempt in range(1, self.max_attempts + 1):
            mapped = self.mapper(self.dataset[index])
            if mapped is not None:
                return mapped
            # Detectron2's MapDataset draws the replacement from a per-worker generator that also remembers past
            # failures, i.e. from the worker's history; here it depends on the position alone.
            if replacements is None:
                replacements = random.Random(iteration_seed(self.seed, self.rank, position, REPLACEMENT_STREAM))
            if attempt >= 3:
                logger.warning("the mapper rejected %d images in a row for stream position %d", attempt, position)
            index = replacements.randrange(len(self.dataset))
        raise RuntimeError(
            f"the training mapper returned None for {self.max_attempts} images in a row (stream position {position},"
            f" rank {self.rank}); check the dataset's records and the mapper's filters"
        )


def build_resumable_train_loader(cfg: CfgNode):
    """Detectron2's train loader for `cfg`, with its sampler wrapped in a `ResumableSampler` and its samples mapped
    by a `SeededSampleStream`.

    The loader carries both as `resumable_sampler` and `sample_stream`: set the sampler's `start_iteration` (and
    the stream's `seed`, when it is not cfg.SEED) before the first batch.
    """
    kwargs = _train_loader_from_config(cfg)
    world_size = comm.get_world_size()
    total = int(kwargs["total_batch_size"])
    if total % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes ({world_size}).")
    dataset = kwargs.pop("dataset")
    if kwargs["sampler"] is None:  # what Detectron2 gives an iterable dataset: no index stream to resume
        raise ValueError(
            "LTTrainer's train loader needs a map-style training dataset (a list of records or a Dataset with "
            f"__getitem__) for its resumable sampler; got the iterable {type(dataset).__name__}."
        )
    _log_repeat_factors(cfg, dataset, kwargs["sampler"])
    per_rank = total // world_size
    sampler = ResumableSampler(kwargs.pop("sampler"), per_rank)
    if isinstance(dataset, list):  # serialized once, shared by the workers without copy-on-read growth
        dataset = DatasetFromList(dataset, copy=False)
    grouping = bool(kwargs["aspect_ratio_grouping"])
    stream = SeededSampleStream(
        dataset,
        kwargs.pop("mapper"),
        sampler,
        chunk_size=1 if grouping else per_rank,
        rank=comm.get_rank(),
        # A negative SEED: a drawn one, which LTTrainer's IterationSeedHook replaces by its own (the checkpoint's);
        # another user of this loader (PreciseBN's) keeps the drawn one.
        seed=int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed()),
    )
    loader = build_detection_train_loader(stream, mapper=None, sampler=None, **kwargs)
    loader.resumable_sampler = sampler
    loader.sample_stream = stream
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
    forward starts; hand the seed to the train loader's `SeededSampleStream`; the seed rides in the checkpoint.

    Must run before the other hooks' `before_step` (LTTrainer puts it first). The first seed governs what the
    other hooks draw; the second the model (RPN / RoI sampling), after whatever the data loader drew in this
    process (the samples' own seeds without workers; the first batch after a (re)start creates the loader's
    iterator, which draws from torch's generator). The samples' augmentations have their own seeds
    (`SeededSampleStream`).
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
        # After resume_or_load (which may have restored the seed), before the first batch creates the loader's
        # iterator (and its workers, which take the stream as it is then).
        stream = getattr(self.trainer.data_loader, "sample_stream", None)
        if stream is not None:  # a subclass may build its own loader
            stream.seed = self.seed
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
