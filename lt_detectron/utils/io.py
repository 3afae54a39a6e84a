"""Atomic file output: readers (and a crash) never see half a file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
from typing import IO, Any, Callable, List, Tuple

# Temporary files of atomic_write: "<name>.<host>.<pid>.<random>.lt-tmp", so that a later start can tell whether the
# process that wrote one is gone (remove_stale_temporaries).
TEMP_SUFFIX = ".lt-tmp"
_TEMP_NAME = re.compile(r"^(?P<name>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def host_name() -> str:
    """This machine's short host name, as temporary and work-file names carry it (a process id means nothing on
    another host)."""
    return socket.gethostname().split(".")[0] or "host"


def make_temporary(folder: str, name: str) -> Tuple[int, str]:
    """`tempfile.mkstemp` in `folder` for `name`, named `<name>.<host>.<pid>.<random>.lt-tmp` so that
    `remove_stale_temporaries` can remove it once its process is gone. Returns (fd, path)."""
    return tempfile.mkstemp(dir=folder, prefix=f"{name}.{host_name()}.{os.getpid()}.", suffix=TEMP_SUFFIX)


def _umask_mode() -> int:
    """0666 minus the process's umask: the mode open() would give a new file (mkstemp gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str, write_fn: Callable[[IO], Any], binary: bool = True) -> str:
    """Call `write_fn(file)` on a temporary file in `path`'s folder, then os.replace it onto `path`.

    The folder is created if needed; on any failure the temporary file is removed and `path` is left untouched. The
    file gets the mode a plain open() would give it (the umask's), not mkstemp's 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = make_temporary(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write_fn(f)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the temporary files that `atomic_write` left in `folder` (not recursive) when its process died
    mid-write; files of live processes, of other hosts (a shared file system) and of other programs are kept.
    Returns the removed paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    host = host_name()
    for entry in os.listdir(folder):
        match = _TEMP_NAME.match(entry)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        path = os.path.join(folder, entry)
        try:
            os.remove(path)
        except FileNotFoundError:  # removed by another process starting at the same time
            continue
        removed.append(path)
    if removed:
        logging.getLogger(__name__).warning(
            "removed %d temporary file(s) of interrupted writes in %s: %s",
            len(removed),
            folder,
            ", ".join(os.path.basename(p) for p in removed),
        )
    return removed


def write_text_atomic(path: str, text: str) -> str:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def write_json_atomic(data: Any, path: str, indent: int = 1, allow_nan: bool = True) -> str:
    """json.dump `data` to `path` atomically."""
    return atomic_write(path, lambda f: json.dump(data, f, indent=indent, allow_nan=allow_nan), binary=False)


def save_figure_atomic(fig: Any, path: str, dpi: float | None = None, **savefig: Any) -> str:
    """Write a matplotlib figure as PNG through `atomic_write`, then close it (also when writing fails); `savefig`
    are further `Figure.savefig` arguments (e.g. bbox_inches="tight")."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, **savefig))
    finally:
        plt.close(fig)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (`hashlib` algorithm name), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
