"""Multi-process training on CPUs (gloo) as well as GPUs (NCCL), on top of Detectron2's launcher.

Detectron2's `launch` picks NCCL whenever CUDA is available and its `create_ddp_model` always passes
`device_ids=[local_rank]`, which DistributedDataParallel rejects for a model on the CPU. Here:
- `launch(..., device=cfg.MODEL.DEVICE)`: CUDA devices go to Detectron2's `launch` unchanged (NCCL); a CPU
  model gets worker processes with the gloo backend, also on a machine that has GPUs;
- `create_ddp_model`: Detectron2's, without `device_ids` when the model's parameters are on the CPU;
- `cpu_aware_ddp()`: makes DefaultTrainer's constructor use it (LTTrainer does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import defaults as d2_defaults
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.engine.launch import launch as d2_launch
from detectron2.utils import comm
from torch import nn

__all__ = ["launch", "create_ddp_model", "cpu_aware_ddp", "broadcast_buffers_from_main"]

logger = logging.getLogger(__name__)

_d2_create_ddp_model = d2_defaults.create_ddp_model


def launch(
    main_func: Callable[..., Any],
    num_processes: int,
    *,
    device: str = "cuda",
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run `main_func(*args)` in `num_processes` processes per machine (Detectron2's `--num-gpus`).

    `device` is the model's device (cfg.MODEL.DEVICE): "cpu" starts gloo workers; anything else is Detectron2's
    `launch` (NCCL on GPUs, one process per GPU). One process in all runs `main_func` in this process.
    """
    if num_processes < 1 or num_machines < 1:
        raise ValueError(f"launch: need >= 1 process and machine; got {num_processes} x {num_machines}")
    if torch.device(device).type != "cpu":
        d2_launch(
            main_func,
            num_processes,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=tuple(args),
            timeout=timeout,
        )
        return
    world_size = num_machines * num_processes
    if world_size == 1:
        main_func(*args)
        return
    if dist_url is None or dist_url == "auto":
        if num_machines > 1:
            raise ValueError("launch: a multi-machine run needs an explicit --dist-url tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.start_processes(
        _cpu_worker,
        nprocs=num_processes,
        args=(main_func, world_size, num_processes, machine_rank, dist_url, tuple(args), timeout),
        daemon=False,
    )


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))  # the OS picks a free port (another process may still take it first)
        return sock.getsockname()[1]


def _cpu_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_processes: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
) -> None:
    # N processes on one machine share its cores: without OMP_NUM_THREADS each would start one thread per core.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_processes))
    rank = machine_rank * num_processes + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    except Exception:
        logger.error(f"Process group URL: {dist_url}")
        raise
    comm.create_local_process_group(num_processes)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()


def create_ddp_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    """Detectron2's `create_ddp_model`; a model on the CPU is wrapped without `device_ids` (gloo)."""
    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        first = next(model.parameters(), None)
        if first is not None and first.device.type == "cpu":
            kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, **kwargs)


@contextlib.contextmanager
def cpu_aware_ddp() -> Iterator[None]:
    """Within this block, Detectron2's DefaultTrainer wraps a CPU model in DDP without `device_ids`.

    DefaultTrainer.__init__ calls the module-level `create_ddp_model` of detectron2.engine.defaults and offers
    no hook for it; the name is swapped for the duration of the constructor and restored afterwards.
    """
    original = d2_defaults.create_ddp_model
    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


def broadcast_buffers_from_main(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    Detectron2 trains with `broadcast_buffers=False`, so each rank's running statistics follow its own images
    and the checkpoint holds rank 0's. Before evaluating, every rank takes rank 0's, so the ranks' shards are
    scored by one model: the one that is saved.
    """
    if comm.get_world_size() == 1:
        return
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    with torch.no_grad():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
