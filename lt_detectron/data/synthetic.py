"""Command line for the synthetic long-tailed dataset (the generator itself lives in lt_shapes.py):

    python -m lt_detectron.data.synthetic --out DIR --seed 0

writes DIR/lt_shapes_train.json, DIR/lt_shapes_val.json and DIR/images/{train,val}/ and prints the summary.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

# Re-exported so `lt_detectron.data.synthetic.generate_lt_shapes` etc. work as documented.
from .lt_shapes import (  # noqa: F401
    COLOURS,
    SHAPES,
    LTShapesSpec,
    category_names,
    generate_lt_shapes,
    is_complete,
    long_tail_image_counts,
    plan_lt_shapes,
)

__all__ = [
    "COLOURS",
    "SHAPES",
    "LTShapesSpec",
    "category_names",
    "generate_lt_shapes",
    "is_complete",
    "long_tail_image_counts",
    "plan_lt_shapes",
    "main",
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate lt_shapes, the synthetic long-tailed LVIS-format dataset.")
    parser.add_argument("--out", required=True, help="output folder (created; must be empty or an lt_shapes dataset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train-images", type=int, default=LTShapesSpec.num_train_images)
    parser.add_argument("--num-val-images", type=int, default=LTShapesSpec.num_val_images)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing lt_shapes dataset in --out")
    args = parser.parse_args(argv)
    summary = generate_lt_shapes(
        args.out,
        seed=args.seed,
        overwrite=args.overwrite,
        num_train_images=args.num_train_images,
        num_val_images=args.num_val_images,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
