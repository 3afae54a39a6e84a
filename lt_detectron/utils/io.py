"""Atomic file output: readers (and a crash) never see half a file."""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any, Callable


def atomic_write(path: str, write_fn: Callable[[IO], Any], binary: bool = True) -> str:
    """Call `write_fn(file)` on a temporary file in `path`'s folder, then os.replace it onto `path`.

    The folder is created if needed; on any failure the temporary file is removed and `path` is left untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write_fn(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json_atomic(data: Any, path: str, indent: int = 1, allow_nan: bool = True) -> str:
    """json.dump `data` to `path` atomically."""
    return atomic_write(path, lambda f: json.dump(data, f, indent=indent, allow_nan=allow_nan), binary=False)


def save_figure_atomic(fig: Any, path: str, dpi: float | None = None) -> str:
    """Write a matplotlib figure as PNG through `atomic_write`, then close it (also when writing fails)."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)
