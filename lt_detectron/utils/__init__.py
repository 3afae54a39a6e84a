"""Small framework-free helpers shared across lt-detectron."""

from .io import atomic_write, write_json_atomic

__all__ = ["atomic_write", "write_json_atomic"]
