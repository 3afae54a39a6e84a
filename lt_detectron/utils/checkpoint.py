"""Atomic checkpoints shared by detection and classification, loadable with `torch.load(weights_only=True)`.

`AtomicCheckpointerMixin` turns fvcore's `Checkpointer` (and Detectron2's `DetectionCheckpointer`, its subclass)
into one whose `save` and `last_checkpoint` tag are atomic: a crash leaves the previous file, never half a file.
Writes go through the checkpointer's path manager, so remote save folders (any iopath handler) keep working.

Checkpoint contents are kept to what the safe unpickler accepts (tensors, numbers, strings, lists, tuples, dicts):
`weights_only_safe` stores numpy arrays as tensors and numpy scalars as Python numbers, and `rng_states` /
`set_rng_states` store the Python, numpy and torch generator states as lists and tensors.
"""

from __future__ import annotations

import os
import random
import re
from collections import OrderedDict
from typing import IO, Any, Callable, Dict

import numpy as np
import torch
from fvcore.common.checkpoint import Checkpointer

from .io import atomic_write

__all__ = [
    "AtomicCheckpointerMixin",
    "AtomicCheckpointer",
    "save_through",
    "weights_only_safe",
    "rng_states",
    "set_rng_states",
]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def save_through(path_manager: Any, path: str, write_fn: Callable[[IO], Any]) -> None:
    """Write `path` with `write_fn(binary file)`: atomically (temporary file + os.replace) for a local path, through
    `path_manager.open` for a URI (``s3://...``, ``manifold://...``), whose single upload is all-or-nothing."""
    if _URI.match(path) and not path.startswith("file://"):
        with path_manager.open(path, "wb") as f:
            write_fn(f)
        return
    atomic_write(path[len("file://") :] if path.startswith("file://") else path, write_fn)


def weights_only_safe(obj: Any) -> Any:
    """A copy of `obj` that `torch.load(..., weights_only=True)` can read back: numpy arrays become tensors
    (same dtype and values; `np.asarray(tensor)` restores them), numpy scalars Python numbers."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):  # plain dict or OrderedDict, the containers the safe unpickler knows
        items = ((k, weights_only_safe(v)) for k, v in obj.items())
        out = OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
        if hasattr(obj, "_metadata"):  # a module state dict's per-module versions (load_state_dict reads them)
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(weights_only_safe(v) for v in obj)
    return obj


def rng_states() -> Dict[str, Any]:
    """The Python, numpy and torch (and CUDA) global generator states, as lists and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: Dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: Dict[str, Any]) -> None:
    """Restore what `rng_states` returned."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class AtomicCheckpointerMixin:
    """`save` and the `last_checkpoint` tag written atomically through the checkpointer's path manager.

    Mix in before an fvcore `Checkpointer` subclass: ``class C(AtomicCheckpointerMixin, DetectionCheckpointer)``.
    Everything saved is passed through `weights_only_safe`.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        data = weights_only_safe(data)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        self.path_manager.mkdirs(self.save_dir)
        save_through(self.path_manager, save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        tag_file = os.path.join(self.save_dir, "last_checkpoint")
        save_through(self.path_manager, tag_file, lambda f: f.write(last_filename_basename.encode()))


class AtomicCheckpointer(AtomicCheckpointerMixin, Checkpointer):
    """fvcore's Checkpointer with atomic saves; loads its own files with `weights_only=True` (tensors and
    containers only: no code from the file runs)."""

    def read(self, path: str) -> Dict[str, Any]:
        """The dict saved in `path` (local or a URI the path manager knows), read with `weights_only=True`."""
        with self.path_manager.open(path, "rb") as f:
            return torch.load(f, map_location=torch.device("cpu"), weights_only=True)

    def _load_file(self, f: str) -> Dict[str, Any]:  # fvcore's documented hook for the file format
        return self.read(f)
