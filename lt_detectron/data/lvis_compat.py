"""Keep lvis-api's evaluation working with NumPy >= 1.24.

lvis 0.5.3 (the last release) calls `np.float`, an alias NumPy removed in 1.24, inside LVISEval.accumulate, so every
LVIS evaluation (ours and Detectron2's LVISEvaluator) would crash. Instead of re-adding the alias to NumPy for the
whole process, lvis.eval alone gets a NumPy view that also answers `float`.
"""

from __future__ import annotations

import types

import numpy as np

__all__ = ["patch_lvis_numpy_aliases"]


class _NumpyWithRemovedAliases(types.ModuleType):
    """Delegates to numpy; adds the builtin aliases (np.float, ...) that lvis-api still uses."""

    _ALIASES = {"float": float, "int": int, "bool": bool, "object": object}

    def __getattr__(self, name):
        if name in self._ALIASES:
            return self._ALIASES[name]
        return getattr(np, name)


def patch_lvis_numpy_aliases() -> None:
    """Idempotent; a no-op when lvis is absent or NumPy still has the aliases."""
    try:
        import lvis.eval as lvis_eval
    except ImportError:
        return
    if hasattr(np, "float") or isinstance(lvis_eval.np, _NumpyWithRemovedAliases):
        return
    lvis_eval.np = _NumpyWithRemovedAliases("numpy")
