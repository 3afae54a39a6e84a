"""Class-balanced development set D held out of the training data, and a resumable dev sampler.

The dev set of Jamal et al., CVPR 2020, arXiv:2003.10780 (§5).

Per benchmark k (the paper's choices): 10 per class on CIFAR-LT, 5 (iNat17) / 2 (iNat18) from train; detection takes at
most k training images per class. Policy for small classes: every class keeps at least one training example,
so a class with n_c <= k gives only n_c - 1 examples to D (none when n_c = 1); the report names those classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["DevSplit", "DevSplitReport", "build_dev_split", "DevBatchSampler"]

logger = logging.getLogger(__name__)

Labels = Union[Sequence[int], Sequence[Iterable[int]], np.ndarray]


@dataclass
class DevSplitReport:
    """Per-class dev/training counts (examples, or images for multi-label data) and the classes short of k."""

    k: int
    num_dev: int  # examples held out
    num_train: int  # examples left for training
    dev_counts: np.ndarray  # [C] dev examples containing class c
    train_counts: np.ndarray  # [C] training examples left containing class c
    short_classes: Dict[int, int] = field(default_factory=dict)  # class -> dev count, for classes with < k
    absent_classes: List[int] = field(default_factory=list)  # classes with no example at all

    def summary(self) -> str:
        """One line for the log: the split's sizes and the classes short of k or absent."""
        parts = [
            f"dev set: {self.num_dev} examples held out (k={self.k} per class), {self.num_train} left for training, "
            f"{len(self.short_classes)} classes with fewer than k dev examples"
        ]
        if self.short_classes:
            none = sorted(c for c, n in self.short_classes.items() if n == 0)
            fewer = sorted(c for c, n in self.short_classes.items() if n > 0)
            if none:
                parts.append(f"no dev example (too few training examples to hold one out): classes {_brief(none)}")
            if fewer:
                parts.append(f"fewer than k dev examples: classes {_brief(fewer)}")
        if self.absent_classes:
            parts.append(f"classes absent from the data: {_brief(self.absent_classes)}")
        return "; ".join(parts)


class DevSplit(NamedTuple):
    """`dev_indices, train_indices, report = build_dev_split(...)` (or by attribute)."""

    dev_indices: np.ndarray  # sorted indices into the given examples
    train_indices: np.ndarray  # the complement, sorted
    report: DevSplitReport


def _brief(ids: Sequence[int], limit: int = 30) -> str:
    ids = list(ids)
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _label_sets(labels: Labels) -> List[np.ndarray]:
    sets = []
    for i, item in enumerate(labels):
        if isinstance(item, (int, np.integer)):
            arr = np.asarray([int(item)], dtype=np.int64)
        else:
            arr = np.unique(np.asarray(list(item), dtype=np.int64))
        if arr.size and arr.min() < 0:
            raise ValueError(f"build_dev_split: example {i} has a negative class id {int(arr.min())}")
        sets.append(arr)
    return sets


def build_dev_split(
    labels: Labels, k: int, *, num_classes: Optional[int] = None, seed: int = 0, log: bool = True
) -> DevSplit:
    """Hold out at most `k` examples per class as a class-balanced dev set; the rest stay for training.

    Greedy, rarest class first; a class's candidates prefer examples with fewer other classes (to keep D balanced),
    ties broken by `seed`. An example is never taken if that would leave any of its classes without a training
    example. Multi-label examples chosen for one class also count for the other classes they contain, so a frequent
    class can exceed k.

    Args:
        labels: one int per example (classification) or one iterable of class ids (>= 0) per example (detection:
            the classes present in an image).
        k: the most dev examples to hold out per class (>= 0).
        num_classes: C; None = the largest class id in `labels` + 1.
        seed: seed of the tie-break among equally good candidates.
        log: log the report's summary (a warning when some class is short of k).

    Returns:
        A DevSplit: sorted dev indices, the sorted remaining training indices, and the report.
    """
    if k < 0:
        raise ValueError(f"build_dev_split: k must be >= 0, got {k}")
    sets = _label_sets(labels)
    seen_max = max((int(s.max()) for s in sets if s.size), default=-1)
    num_classes = seen_max + 1 if num_classes is None else int(num_classes)
    if seen_max >= num_classes:
        raise ValueError(f"build_dev_split: class id {seen_max} >= num_classes {num_classes}")

    train_counts = np.zeros(num_classes, dtype=np.int64)
    by_class: List[List[int]] = [[] for _ in range(num_classes)]
    for i, s in enumerate(sets):
        train_counts[s] += 1
        for c in s:
            by_class[c].append(i)
    dev_counts = np.zeros(num_classes, dtype=np.int64)
    in_dev = np.zeros(len(sets), dtype=bool)
    rng = np.random.default_rng(seed)

    for c in np.argsort(train_counts, kind="stable"):
        candidates = np.asarray(by_class[c], dtype=np.int64)
        if dev_counts[c] >= k or candidates.size == 0:
            continue
        sizes = np.asarray([sets[i].size for i in candidates])
        order = np.lexsort((rng.random(candidates.size), sizes))  # fewest classes first, random tie-break
        for i in candidates[order]:
            if dev_counts[c] >= k:
                break
            if in_dev[i] or (train_counts[sets[i]] <= 1).any():
                continue
            in_dev[i] = True
            dev_counts[sets[i]] += 1
            train_counts[sets[i]] -= 1

    present = np.zeros(num_classes, dtype=bool)
    for s in sets:
        present[s] = True
    report = DevSplitReport(
        k=k,
        num_dev=int(in_dev.sum()),
        num_train=int((~in_dev).sum()),
        dev_counts=dev_counts,
        train_counts=train_counts,
        short_classes={int(c): int(dev_counts[c]) for c in np.flatnonzero(present & (dev_counts < k))},
        absent_classes=[int(c) for c in np.flatnonzero(~present)],
    )
    if log:
        logger.log(logging.WARNING if report.short_classes else logging.INFO, report.summary())
    return DevSplit(np.flatnonzero(in_dev), np.flatnonzero(~in_dev), report)


class DevBatchSampler:
    """Endless random batches of dev indices, reshuffled each pass; resumable exactly via state_dict.

    The permutation of pass `e` depends only on (seed, e), so the state is two integers.

    Args:
        indices: the dev example indices (non-empty), e.g. `DevSplit.dev_indices`.
        batch_size: indices per batch (>= 1); a batch may span two passes.
        seed: seed of the permutations.
    """

    def __init__(self, indices: Sequence[int], batch_size: int, seed: int = 0):
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size == 0:
            raise ValueError("DevBatchSampler: the dev set is empty; raise the per-class k or check the split report")
        if batch_size < 1:
            raise ValueError(f"DevBatchSampler: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0

    def _permutation(self) -> np.ndarray:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return self.indices[torch.randperm(self.indices.size, generator=gen).numpy()]

    def next_batch(self) -> np.ndarray:
        """The next batch: (batch_size,) int64 dev indices."""
        out: List[int] = []
        while len(out) < self.batch_size:
            perm = self._permutation()
            take = perm[self.position : self.position + self.batch_size - len(out)]
            out.extend(int(i) for i in take)
            self.position += take.size
            if self.position >= perm.size:
                self.epoch, self.position = self.epoch + 1, 0
        return np.asarray(out, dtype=np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> Dict[str, Any]:
        """{"seed", "epoch", "position", "size"}: plain ints (size: the dev set's, checked on loading)."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "size": int(self.indices.size)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume where `state` left off.

        Args:
            state: a dict from `state_dict`, of a dev set of the same size.
        """
        if int(state["size"]) != self.indices.size:
            raise ValueError(
                f"DevBatchSampler.load_state_dict: checkpoint dev set has {state['size']} examples, this run "
                f"{self.indices.size}; the dev split must be rebuilt with the same data, k and seed"
            )
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
