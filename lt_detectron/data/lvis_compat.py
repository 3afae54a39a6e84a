"""Keep lvis-api's evaluation working with NumPy >= 1.24.

lvis 0.5.3 (the last release) calls `np.float`, an alias NumPy removed in 1.24, inside LVISEval.accumulate, so every
LVIS evaluation (ours and Detectron2's LVISEvaluator) would crash. Instead of re-adding the alias to NumPy for the
whole process, lvis.eval alone gets a NumPy view that also answers `float`.
"""

from __future__ import annotations

import importlib.abc
import sys
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
    """Idempotent; a no-op when lvis is absent or NumPy still has the aliases.

    lvis.eval is patched when it is first imported, not imported here: importing lvis pulls in matplotlib (lvis.vis),
    about 24 MB and 0.1 s that a training process which never evaluates with lvis-api would pay at start-up.
    """
    if hasattr(np, "float"):
        return
    module = sys.modules.get("lvis.eval")
    if module is not None:
        _patch(module)
    elif not any(isinstance(finder, _PatchLvisEvalOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchLvisEvalOnImport())


def _patch(lvis_eval: types.ModuleType) -> None:
    if not isinstance(getattr(lvis_eval, "np", None), _NumpyWithRemovedAliases):
        lvis_eval.np = _NumpyWithRemovedAliases("numpy")


class _PatchLvisEvalOnImport(importlib.abc.MetaPathFinder):
    """Finds lvis.eval with the other finders and patches the module right after it has executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "lvis.eval":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                execute = spec.loader.exec_module

                def exec_and_patch(module: types.ModuleType, execute=execute) -> None:
                    execute(module)
                    _patch(module)

                spec.loader.exec_module = exec_and_patch
                return spec
        return None
