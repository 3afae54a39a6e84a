"""Rank-aware helpers on plain `torch.distributed` (no Detectron2), usable from the loss library and the heads.

Every function here is a no-op in a single process (torch.distributed not initialised, or a world of 1), so the
same code runs in a plain script, a test, and a multi-process Detectron2 run. The collective ones must be
called by every rank at the same point of the program (as any collective), including ranks with nothing to add.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "get_rank", "get_world_size", "all_reduce_sum", "broadcast_from_main"]

T = TypeVar("T")


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over all ranks (a new tensor on `tensor`'s device; `tensor` itself in a
    single process). NCCL reduces CUDA tensors only: a CPU tensor is moved to the current CUDA device and back."""
    if not is_distributed():
        return tensor
    work = tensor.detach().clone()
    if dist.get_backend() == dist.Backend.NCCL and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def broadcast_from_main(fn: Callable[[], T]) -> T:
    """`fn()` computed on rank 0 only and sent to every rank (any picklable value).

    For inputs every rank needs identical and that are costly or racy to compute on each (per-class counts
    read from a large annotation file): all ranks then hold rank 0's value. An exception raised by `fn` on
    rank 0 is re-raised on every rank, so no rank waits for a value that never comes.
    """
    if not is_distributed():
        return fn()
    payload: list = [None]
    if get_rank() == 0:
        try:
            payload[0] = (True, fn())
        except Exception as err:  # sent to the other ranks, then re-raised here as well
            payload[0] = (False, err)
    dist.broadcast_object_list(payload, src=0)
    ok, value = payload[0]
    if not ok:
        raise value
    return value
