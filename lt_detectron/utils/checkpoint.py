"""Atomic checkpoints shared by detection and classification, loadable with `torch.load(weights_only=True)`.

`AtomicCheckpointerMixin` turns fvcore's `Checkpointer` (and Detectron2's `DetectionCheckpointer`, its subclass)
into one whose `save` and `last_checkpoint` tag are atomic: a crash leaves the previous file, never half a file.
Writes go through the checkpointer's path manager, so remote save folders (any iopath handler) keep working.

Checkpoint contents are kept to what the safe unpickler accepts (tensors, numbers, strings, lists, tuples, dicts):
`weights_only_safe` stores numpy arrays as tensors and numpy scalars as Python numbers, and `rng_states` /
`set_rng_states` store the Python, numpy and torch generator states as lists and tensors.

A checkpoint that is missing or cannot be read raises `CheckpointError` (a user error naming the file, why and the
fix); `resume_or_load` falls back from an unreadable last checkpoint to the newest intact one beside it, warning.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import re
from collections import OrderedDict
from typing import IO, Any, Callable, Dict, List

import numpy as np
import torch
from fvcore.common.checkpoint import Checkpointer

from .cli import UserError
from .io import atomic_write

__all__ = [
    "AtomicCheckpointerMixin",
    "AtomicCheckpointer",
    "CheckpointError",
    "save_through",
    "weights_only_safe",
    "rng_states",
    "set_rng_states",
]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_logger = logging.getLogger(__name__)
READ_FIX = "copy or download the file again, or point to another checkpoint"


class CheckpointError(UserError):
    """A checkpoint that is missing or cannot be read: `path`, `reason` (what is wrong) and `fix`, kept apart so a
    caller can say where the path came from (MODEL.WEIGHTS, last_checkpoint)."""

    def __init__(self, path: str, reason: str, fix: str = READ_FIX):
        self.path, self.reason, self.fix = path, reason, fix
        super().__init__(f"checkpoint {path} {reason}. Fix: {fix}.")


def read_checkpoint_file(path: str, read: Callable[[str], Dict[str, Any]]) -> Dict[str, Any]:
    """`read(path)`; whatever the reader raises (torch's "failed finding central directory" for a truncated file,
    an unpickling error for another kind of file) becomes a CheckpointError naming the file."""
    try:
        return read(path)
    except CheckpointError:
        raise
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        size = os.path.getsize(path) if os.path.isfile(path) else None
        raise CheckpointError(
            path,
            f"cannot be read ({type(err).__name__}: {first}){f'; {size} bytes' if size is not None else ''}: it is "
            "truncated (an interrupted copy, download or save) or not a checkpoint",
        ) from err


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
    Everything saved is passed through `weights_only_safe`. Loading a missing or unreadable file raises
    `CheckpointError`; resuming from an unreadable last checkpoint falls back to the newest intact checkpoint beside
    it (`FALLBACK_PATTERN`: Detectron2's periodic and final names).
    """

    FALLBACK_PATTERN = "model_*.pth"

    def load(self, path: str, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        # fvcore only asserts "Checkpoint ... not found!"; URIs are left to the path manager (it downloads them).
        if path and not _URI.match(path) and not os.path.isfile(path):
            raise CheckpointError(
                path,
                f"does not exist (relative paths are read from {os.getcwd()})",
                "pass the path of an existing checkpoint",
            )
        try:
            return super().load(path, *args, **kwargs)
        finally:
            if hasattr(self, "_parsed_url_during_load"):  # Detectron2 resets it only after a successful load
                self._parsed_url_during_load = None

    def _load_file(self, f: str) -> Dict[str, Any]:
        return read_checkpoint_file(f, super()._load_file)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """fvcore's `resume_or_load`, falling back to the newest intact checkpoint when the last one is unreadable."""
        if resume and self.has_checkpoint():
            return self._load_newest_intact(self.get_checkpoint_file())
        return self.load(path, checkpointables=[])

    def _checkpoints_newest_first(self) -> List[str]:
        files = glob.glob(os.path.join(glob.escape(self.save_dir), self.FALLBACK_PATTERN))
        return sorted(files, key=lambda p: (os.path.getmtime(p), p), reverse=True)

    def _load_newest_intact(self, tagged: str) -> Dict[str, Any]:
        """Load `tagged` (what last_checkpoint names) or, if it is missing or unreadable, the newest checkpoint of the
        save folder that can be read; a file is read before any state is restored, so a failed try changes nothing."""
        others = [p for p in self._checkpoints_newest_first() if os.path.abspath(p) != os.path.abspath(tagged)]
        candidates = [tagged] + others
        bad: List[CheckpointError] = []
        for path in candidates:
            try:
                loaded = self.load(path)
            except CheckpointError as err:
                if _URI.match(path):  # remote folders: no listing to fall back on
                    raise
                bad.append(err)
                continue
            if bad:
                self.logger.warning(
                    "RESUME FELL BACK: last_checkpoint names %s, which %s; resumed from %s, the newest intact "
                    "checkpoint in %s (skipped: %s). The unreadable files are kept; delete them when not needed.",
                    tagged,
                    bad[0].reason,
                    path,
                    self.save_dir,
                    ", ".join(os.path.basename(e.path) for e in bad),
                )
            return loaded
        raise CheckpointError(
            tagged,
            f"(named by {os.path.join(self.save_dir, 'last_checkpoint')}) {bad[0].reason}, and no other checkpoint "
            f"in the folder can be read ({len(bad) - 1} tried)",
            "restore an intact checkpoint into the folder, or start over in a new OUTPUT_DIR (or without --resume)",
        )

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
        return read_checkpoint_file(f, self.read)
