"""lt-detectron: long-tailed detection and classification methods as Detectron2 parts.

`lt_detectron.losses` and `lt_detectron.meta` are plain PyTorch and import without Detectron2;
`add_lt_config` and the Detectron2 parts are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["add_lt_config", "__version__"]


def __getattr__(name: str):
    if name == "add_lt_config":
        from .config import add_lt_config

        return add_lt_config
    raise AttributeError(f"module 'lt_detectron' has no attribute {name!r}")
