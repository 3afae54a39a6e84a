"""The seed-0 lt_shapes data is pinned by content hash, so a dependency that changes what the generator writes
(numpy's random streams, OpenCV's rasterisation / resizing / PNG encoding, ...) fails here instead of silently
moving every table.

Always run: the class layout of the whole default dataset (`plan_lt_shapes`, all 1800 images) and a documented
subset rendered by the generator's own code: train images 1-20 and val images 1501-1510 with their annotations.
Each image depends only on (seed, split, index) and the plan, so these are byte for byte the first files and
records of the full dataset (checked against a full generation when the pins were taken).
Opt-in (LT_FULL_DATA_HASH=1, ~15 s of generation on 2 idle cores): the full dataset's json files, all PNG files
and all decoded pixels.

Print the current values (to update the pins after an intended change, and bump GENERATOR_VERSION):
    PYTHONPATH=. python tests/test_results_pinned_data.py [--full]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from lt_detectron.data import lt_shapes

SUBSET_TRAIN, SUBSET_VAL = 20, 10
# The seed-0 train split holds 5118 annotations, so the val split's annotation ids start at 5119.
FIRST_VAL_ANN_ID = 5119

# Measured with the environment in which they were pinned (docs/results.md, "Pinned data"). The layout and the
# annotation records are the same on both supported stacks; the rendered pixels are not (the current stack's OpenCV
# and NumPy 2 draw and encode differently), so pixel and PNG pins are kept per stack, keyed by its Python version.
STACK_OF_PYTHON = {(3, 10): "quick", (3, 12): "current"}
PINNED_SUBSET = {
    "plan": "89191a55a452f98d1ed9f636e1d853d45eb3b3bfc35d19af39c177d40d785d09",
    "records": "29a28b93ac3b40156cf6b61696f99b68e3148e0fbdad9cdf50107bf511ea528c",
}
PINNED_SUBSET_IMAGES = {
    "quick": {
        "png_bytes": "5b2bf109c38569466e1dd9e309dbd4e68c424d2d01a886e06f6e351c4777ea6f",
        "pixels": "ccd758dbc81ead59d252a37264cee3e1ee163b4400baa208e84707f8c2bacbbd",
    },
    "current": {
        "png_bytes": "de2323f36e25dfc7891579cf2ccb922fad58ba1c2ad1ce15444a8383db2a88b6",
        "pixels": "e1469ea9ff4036829a15c467fe6776c4e8c4a65d9977e1dd24ddc4d5b2e9853e",
    },
}
PINNED_FULL = {
    "lt_shapes_train.json": "b8386918228a2da8da4a263c9b8e437a24b36cfb123bc031cc98cf673574b7b1",
    "lt_shapes_val.json": "08764a7a3e3380ee2193faa6efe53aa6646c861fe5625928c751a6cd47df37f5",
    "lt_shapes_info.json": "5f55a9bf4acc5d0734d634858accaa7faa17ea98924e758d71e24e8d268850df",
    "images": "1800",
}
PINNED_FULL_IMAGES = {
    "quick": {
        "png_bytes": "a73daf26853a3b387d5b9d17a5e598407f281e41c387d7ac14c41d9993c48479",
        "pixels": "d233a6e9a353b9b7d9b55aa51fe73a979a98ce432181a1f2b9a221567718aec0",
    },
    "current": {
        "png_bytes": "40098335c8c0fe69e807d7b7a0fd8bd62a0618052ffb2b895603369121b8d229",
        "pixels": "8467fc16a88ee4c820965f720aafe2b45b26380fc00d3119535235db912c2253",
    },
}


def _pins(common: dict, images: dict) -> dict:
    """The pins for this interpreter's stack; an unsupported Python (e.g. a user's own build) has no image pins."""
    stack = STACK_OF_PYTHON.get(sys.version_info[:2])
    if stack is None:
        pytest.skip(
            f"no pinned lt_shapes images for Python {sys.version_info[0]}.{sys.version_info[1]} (supported stacks: "
            f"{sorted(STACK_OF_PYTHON.values())}); print this environment's values with "
            "`python tests/test_results_pinned_data.py` to pin them"
        )
    return {**common, **images[stack]}


WHAT = {
    "plan": "the class layout (numpy's random streams: plan_lt_shapes)",
    "records": "image and annotation records (masks -> polygons, boxes, areas: OpenCV rasterisation / contours)",
    "png_bytes": "PNG file bytes (OpenCV's PNG encoder, zlib)",
    "pixels": "decoded pixels (rendering: OpenCV drawing / resizing, numpy noise; decoding: Pillow)",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _results_module():
    return load_script("benchmarks/_results.py", "lt_bench_results")


def subset_fingerprint() -> dict:
    """sha256 of the default seed-0 plan and of the documented subset, rendered into a temporary folder."""
    from PIL import Image

    spec = lt_shapes.LTShapesSpec()
    plan = lt_shapes.plan_lt_shapes(spec)
    layout = {"train": plan["train"], "val": plan["val"], "train_image_counts": plan["train_image_counts"].tolist()}
    out = {"plan": _sha(json.dumps(layout, separators=(",", ":")).encode())}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = lt_shapes._render_split("train", plan["train"][:SUBSET_TRAIN], 1, 1, spec, root)
        val = lt_shapes._render_split(
            "val", plan["val"][:SUBSET_VAL], spec.num_train_images + 1, FIRST_VAL_ANN_ID, spec, root
        )
        records = {
            "train": {"images": train[0], "annotations": train[1]},
            "val": {"images": val[0], "annotations": val[1]},
        }
        out["records"] = _sha(json.dumps(records, separators=(",", ":")).encode())
        png, pixels = hashlib.sha256(), hashlib.sha256()
        for image in train[0] + val[0]:
            path = root / "images" / image["file_name"]
            png.update(path.read_bytes())
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            pixels.update(f"{image['file_name']}:{arr.shape}".encode() + arr.tobytes())
        out["png_bytes"], out["pixels"] = png.hexdigest(), pixels.hexdigest()
    return out


def _compare(actual: dict, pinned: dict) -> list:
    return [
        f"{key}: {actual.get(key)} != pinned {value} -- {WHAT.get(key, key)} changed"
        for key, value in pinned.items()
        if actual.get(key) != value
    ]


def test_seed0_layout_and_subset_match_the_pins():
    diffs = _compare(subset_fingerprint(), _pins(PINNED_SUBSET, PINNED_SUBSET_IMAGES))
    assert not diffs, (
        "the seed-0 lt_shapes data changed (a dependency or the generator); every table measured on it is no "
        "longer comparable. If intended: bump GENERATOR_VERSION, rerun the tables and update the pins "
        "(python tests/test_results_pinned_data.py).\n" + "\n".join(diffs)
    )


@pytest.mark.skipif(os.environ.get("LT_FULL_DATA_HASH") != "1", reason="set LT_FULL_DATA_HASH=1 (~15 s generation)")
def test_full_seed0_dataset_matches_the_pins(tmp_path):
    pins = _pins(PINNED_FULL, PINNED_FULL_IMAGES)
    lt_shapes.generate_lt_shapes(tmp_path / "lt_shapes", seed=0)
    diffs = _compare(_results_module().lt_shapes_fingerprint(str(tmp_path / "lt_shapes")), pins)
    assert not diffs, "the full seed-0 lt_shapes dataset changed:\n" + "\n".join(diffs)


if __name__ == "__main__":
    print("subset:", json.dumps(subset_fingerprint(), indent=2))
    if "--full" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            lt_shapes.generate_lt_shapes(Path(tmp) / "lt_shapes", seed=0)
            print("full:", json.dumps(_results_module().lt_shapes_fingerprint(str(Path(tmp) / "lt_shapes")), indent=2))
