"""Small framework-free helpers shared across lt-detectron."""

from .io import (
    atomic_write,
    file_digest,
    remove_stale_temporaries,
    save_figure_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = [
    "atomic_write",
    "file_digest",
    "remove_stale_temporaries",
    "save_figure_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
