"""Deprecated alias: the generator and its CLI live in `lt_detectron.data.lt_shapes`.

python -m lt_detectron.data.lt_shapes --out DIR --seed 0
"""

from __future__ import annotations

import warnings

from .lt_shapes import *  # noqa: F401,F403
from .lt_shapes import main

warnings.warn(
    "lt_detectron.data.synthetic is deprecated; use lt_detectron.data.lt_shapes "
    "(CLI: python -m lt_detectron.data.lt_shapes)",
    DeprecationWarning,
    stacklevel=2,
)

if __name__ == "__main__":
    main()
