"""The evaluator's C extensions (`_records.c`, `_rle.c`, `_matching.c`, built by `pip install -e .`), imported in one
place so that a source tree without them fails with the fix, not a bare ImportError."""

try:
    from . import _matching, _records, _rle
except ImportError as err:  # pragma: no cover - a checkout used without installing it
    raise ImportError(
        f"lt_detectron's C extensions are not built ({err}). Fix: `pip install -e .` in the repository (or "
        f"`python setup.py build_ext --inplace`); it needs a C compiler and Python's headers, as Detectron2 does."
    ) from err

__all__ = ["_matching", "_records", "_rle"]
