"""`lt_shapes`: a small synthetic long-tailed instance-segmentation dataset in LVIS v1 format.

Each class is a visible (shape, colour) pair, e.g. "red_star". Images are 128x128 RGB with a smooth noisy
background, clutter (lines, blobs) that is not an object, 2-6 objects of 16-56 px that may overlap (the
annotation is the visible part), and mild colour jitter. The train split is long-tailed with all three LVIS
frequency groups (rare 1..10 training images, common 11..100, frequent > 100); the val split
is class-balanced (every class occurs in the same number of val images).

Output (deterministic given the seed; written to a temporary folder and renamed into place):
    OUT/lt_shapes_train.json, OUT/lt_shapes_val.json, OUT/lt_shapes_info.json,
    OUT/images/train/000001.png, OUT/images/val/001501.png, ...

CLI: `python -m lt_detectron.data.lt_shapes --out DIR --seed 0` writes DIR/lt_shapes_{train,val}.json and
DIR/images/{train,val}/ and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..utils.io import _process_alive, host_name

__all__ = [
    "SHAPES",
    "COLOURS",
    "LTShapesSpec",
    "category_names",
    "long_tail_image_counts",
    "plan_lt_shapes",
    "generate_lt_shapes",
    "is_complete",
    "plan_balanced",
    "render_balanced",
    "BALANCED_STREAM",
    "TRAIN_JSON",
    "VAL_JSON",
    "INFO_JSON",
    "main",
]

logger = logging.getLogger(__name__)

# Bump when the generated content changes, so cached datasets are regenerated (see `is_complete`).
GENERATOR_VERSION = 1
TRAIN_JSON = "lt_shapes_train.json"
VAL_JSON = "lt_shapes_val.json"
INFO_JSON = "lt_shapes_info.json"  # written last: its presence marks a complete dataset
# Any host: Detectron2's LVIS loader only uses the last two path parts ("split/file") of coco_url.
URL_PREFIX = "http://lt-shapes.local"

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
# Saturated, well-separated hues; background and blobs are desaturated so colour stays a reliable cue.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 185, 60),
    "blue": (45, 85, 235),
    "yellow": (235, 210, 40),
    "magenta": (205, 50, 210),
}
MAX_OBJECTS = 6
MAX_DISTINCT_CLASSES = 4  # per image, leaving room for repeated instances of a present class
MIN_VISIBLE_FRACTION = 0.6  # an occluded object keeps at least this share of its pixels


def category_names() -> List[str]:
    """Class names in category-id order (id = index + 1), grouped by shape: red_circle, green_circle, ..."""
    return [f"{colour}_{shape}" for shape in SHAPES for colour in COLOURS]


@dataclass(frozen=True)
class LTShapesSpec:
    """Every knob of the generator; stored in lt_shapes_info.json next to the data."""

    seed: int = 0
    num_train_images: int = 1500
    num_val_images: int = 300
    image_size: int = 128
    val_classes_per_image: int = 3
    min_object_size: int = 16
    max_object_size: int = 56
    # Largest share of training images that one class may occur in (the head of the tail).
    max_class_fraction: float = 0.4

    def __post_init__(self):
        if not 8 <= self.min_object_size <= self.max_object_size <= self.image_size - 8:
            raise ValueError(
                f"LTShapesSpec: need 8 <= min_object_size <= max_object_size <= image_size - 8, got "
                f"{self.min_object_size}, {self.max_object_size}, image_size {self.image_size}"
            )
        if not 0 < self.max_class_fraction <= 1 or self.val_classes_per_image < 1:
            raise ValueError("LTShapesSpec: max_class_fraction must be in (0, 1] and val_classes_per_image >= 1")


def long_tail_image_counts(num_classes: int, num_images: int, max_fraction: float = 0.4) -> np.ndarray:
    """Target number of training images per class rank: thirds of frequent (>100), common and rare classes.

    Each group decays geometrically between the LVIS group bounds (frequent: max_fraction*N down to 120,
    common: 90 down to 12, rare: 10 down to 1). For small N the counts are clipped and scaled down to what
    the images can hold, so tiny test sets still generate (their groups then follow from the real counts).
    """
    n_rare = num_classes // 3
    n_common = num_classes // 3
    n_frequent = num_classes - n_rare - n_common
    top = max(1.0, np.floor(max_fraction * num_images))
    counts = np.concatenate(
        [
            np.geomspace(max(top, 120.0), 120.0, n_frequent),
            np.geomspace(90.0, 12.0, n_common),
            np.geomspace(10.0, 1.0, n_rare),
        ]
    )
    counts = np.clip(np.round(counts), 1, top)
    capacity = MAX_DISTINCT_CLASSES * num_images
    if counts.sum() > capacity:
        counts = np.maximum(1, np.floor(counts * capacity / counts.sum()))
    return counts.astype(np.int64)


def _assign_classes(image_counts: np.ndarray, num_images: int, rng: np.random.Generator) -> List[List[int]]:
    """Put class c into exactly image_counts[c] distinct images, filling the least-loaded images first."""
    load = np.zeros(num_images, dtype=np.int64)
    members: List[List[int]] = [[] for _ in range(num_images)]
    for c in np.argsort(-image_counts, kind="stable"):
        order = np.lexsort((rng.random(num_images), load))  # least loaded first, random tie-break
        for i in order[: image_counts[c]]:
            members[i].append(int(c))
            load[i] += 1
    if load.min() == 0:
        raise ValueError(
            f"lt_shapes: {int((load == 0).sum())} of {num_images} images got no object; "
            "use fewer images or more classes per image."
        )
    return members


def _instances_per_image(members: List[List[int]], rng: np.random.Generator) -> List[List[int]]:
    """Add repeated instances of present classes (up to MAX_OBJECTS) and shuffle the drawing order."""
    images = []
    for classes in members:
        extra = rng.binomial(MAX_OBJECTS - len(classes), 0.3)
        objs = list(classes) + [int(c) for c in rng.choice(classes, size=extra)]
        images.append([objs[k] for k in rng.permutation(len(objs))])
    return images


def plan_lt_shapes(spec: LTShapesSpec = LTShapesSpec()) -> Dict[str, object]:
    """The class layout of both splits, without rendering: cheap, and exactly what `generate_lt_shapes` draws.

    Returns {"train": [[class_index, ...] per image], "val": [...], "train_image_counts": np.ndarray[C]}
    with class indices 0..C-1 (category id = index + 1).
    """
    num_classes = len(category_names())
    min_images = -(-num_classes // MAX_DISTINCT_CLASSES)
    if min(spec.num_train_images, spec.num_val_images) < min_images:
        raise ValueError(
            f"lt_shapes needs at least {min_images} images per split so every one of the {num_classes} classes "
            f"fits (<= {MAX_DISTINCT_CLASSES} classes per image); got num_train_images={spec.num_train_images}, "
            f"num_val_images={spec.num_val_images}"
        )
    rng = np.random.default_rng([spec.seed, 0])
    by_rank = long_tail_image_counts(num_classes, spec.num_train_images, spec.max_class_fraction)
    # Which (shape, colour) is rare depends on the seed only.
    train_counts = np.empty(num_classes, dtype=np.int64)
    train_counts[rng.permutation(num_classes)] = by_rank
    train = _instances_per_image(_assign_classes(train_counts, spec.num_train_images, rng), rng)

    per_class_val = round(spec.num_val_images * spec.val_classes_per_image / num_classes)
    per_class_val = int(np.clip(per_class_val, 1, MAX_DISTINCT_CLASSES * spec.num_val_images // num_classes))
    val_counts = np.full(num_classes, per_class_val, dtype=np.int64)
    val = _instances_per_image(_assign_classes(val_counts, spec.num_val_images, rng), rng)
    return {"train": train, "val": val, "train_image_counts": train_counts}


# ---------------------------------------------------------------------------------------------- rendering


def _shape_polygon(shape: str, size: float, angle: float) -> np.ndarray:
    """Vertices (K, 2) of a shape of bounding size `size`, centred at the origin, rotated by `angle` rad."""
    r = size / 2.0
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.8 * r
    elif shape == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r + [0.0, 0.2 * r]
    elif shape == "diamond":  # a rhombus, taller than wide, so it never looks like a rotated square
        pts = np.array([[0, -1], [0.65, 0], [0, 1], [-0.65, 0]], dtype=np.float64) * r
    elif shape == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]
    elif shape == "cross":
        a, b = 1.0, 0.33
        pts = (
            np.array(
                [
                    [-b, -a],
                    [b, -a],
                    [b, -b],
                    [a, -b],
                    [a, b],
                    [b, b],
                    [b, a],
                    [-b, a],
                    [-b, b],
                    [-a, b],
                    [-a, -b],
                    [-b, -b],
                ]
            )
            * r
        )
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _fill(polygon: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth low-saturation colour field + clutter lines and blobs, float32 RGB in 0..255."""
    grey = rng.uniform(70, 180)
    coarse = grey + rng.normal(0, 25, (4, 4, 1)) + rng.normal(0, 10, (4, 4, 3))
    img = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(2, 6)):  # muted blobs
        colour = (grey + rng.normal(0, 20, 3)).clip(0, 255).tolist()
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(3, 14, 2))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    for _ in range(rng.integers(3, 9)):  # thin lines in any colour
        colour = rng.uniform(0, 255, 3).tolist()
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 3)))
    return img


def _has_hole(mask: np.ndarray) -> bool:
    # LVIS polygons cannot express holes (pycocotools unions them), so no visible region may have one.
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def _place(shape: str, rng: np.random.Generator, spec: LTShapesSpec, full: List[np.ndarray], visible: List[np.ndarray]):
    """Pick size/angle/position so that every earlier object keeps MIN_VISIBLE_FRACTION of its pixels, hole-free."""
    size_hi = float(spec.max_object_size)
    best, best_score = None, -np.inf
    for attempt in range(60):
        if attempt and attempt % 15 == 0:
            size_hi = max(spec.min_object_size, 0.8 * size_hi)
        size = rng.uniform(spec.min_object_size, max(size_hi, spec.min_object_size + 1e-3))
        poly = _shape_polygon(shape, size, rng.uniform(-np.pi / 12, np.pi / 12))
        lo, hi = poly.min(0), poly.max(0)
        centre = rng.uniform(-lo + 1, spec.image_size - 2 - hi)
        mask = _fill(poly + centre, spec.image_size)
        score = 1.0
        for f, v in zip(full, visible):
            if (v & mask).any():
                left = v & ~mask
                score = min(score, np.count_nonzero(left) / np.count_nonzero(f) - (1.0 if _has_hole(left) else 0.0))
        if score > best_score:
            best, best_score = mask, score
        if score >= MIN_VISIBLE_FRACTION:
            break
    return best


def _polygons_from_mask(mask: np.ndarray, upsample: int = 4) -> List[List[float]]:
    """Outer contours of a binary mask as LVIS polygons [x1, y1, x2, y2, ...] that rasterize back to it exactly.

    Tracing a 4x nearest-upsampled mask puts the vertices 1/8 px inside the pixel edges, so pycocotools
    (pixel c covers [c, c+1)) reproduces every pixel; tracing pixel centres would erode each mask by ~half a pixel.
    """
    big = cv2.resize(mask.astype(np.uint8), None, fx=upsample, fy=upsample, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [
        [round((float(v) + 0.5) / upsample, 3) for v in contour.reshape(-1)]
        for contour in contours
        if len(contour) >= 3
    ]


def _render(classes: Sequence[int], rng: np.random.Generator, spec: LTShapesSpec):
    """One image (uint8 RGB) and, per object, (class index, visible mask)."""
    names = category_names()
    img = _background(rng, spec.image_size)
    full: List[np.ndarray] = []
    visible: List[np.ndarray] = []
    for c in classes:
        colour_name, shape = names[c].split("_", 1)
        mask = _place(shape, rng, spec, full, visible)
        visible = [v & ~mask for v in visible]
        full.append(mask)
        visible.append(mask.copy())
        colour = np.clip(np.array(COLOURS[colour_name]) * rng.uniform(0.85, 1.1) + rng.normal(0, 10, 3), 0, 255)
        img[mask] = colour
    img += rng.normal(0, 6, img.shape)  # sensor-like noise over objects and background alike
    return np.clip(np.round(img), 0, 255).astype(np.uint8), list(zip(classes, visible))


def _annotation(mask: np.ndarray, class_index: int, image_id: int, ann_id: int, where: str) -> dict:
    polys = _polygons_from_mask(mask)
    if not polys:  # cannot happen with MIN_VISIBLE_FRACTION; fail loudly rather than write a bad dataset
        raise RuntimeError(f"lt_shapes: object {ann_id} in {where} has no visible polygon")
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": class_index + 1,
        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        "area": int(mask.sum()),
        "segmentation": polys,
    }


def _frequency(image_count: int) -> str:
    return "r" if image_count <= 10 else ("c" if image_count <= 100 else "f")


def _render_split(
    split: str, plan: List[List[int]], first_image_id: int, first_ann_id: int, spec: LTShapesSpec, out: Path
):
    images, annotations = [], []
    num_classes = len(category_names())
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    ann_id = first_ann_id
    start = time.perf_counter()
    for k, classes in enumerate(plan):
        image_id = first_image_id + k
        # Per-image stream: an image depends only on (seed, split, index), not on the images before it.
        rng = np.random.default_rng([spec.seed, 1 if split == "train" else 2, k])
        img, objects = _render(classes, rng, spec)
        file_name = f"{split}/{image_id:06d}.png"
        cv2.imwrite(str(out / "images" / file_name), img[:, :, ::-1])
        present = sorted({c + 1 for c in classes})
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "coco_url": f"{URL_PREFIX}/{file_name}",
                "width": spec.image_size,
                "height": spec.image_size,
                # Exhaustively annotated: every absent class is a verified negative, none is "not exhaustive",
                # so LVISEval counts every false positive (as COCO would).
                "neg_category_ids": [c for c in range(1, num_classes + 1) if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        for c, mask in objects:
            annotations.append(_annotation(mask, c, image_id, ann_id, f"{split} image {image_id}"))
            ann_id += 1
        if (k + 1) % 250 == 0 or k + 1 == len(plan):
            eta = (time.perf_counter() - start) / (k + 1) * (len(plan) - k - 1)
            logger.info("lt_shapes %s: %d/%d images, ETA %.0f s", split, k + 1, len(plan), eta)
    return images, annotations


def _categories(train_annotations: List[dict]) -> List[dict]:
    """LVIS category records; counts and r/c/f from the TRAIN split (identical in both jsons, as in LVIS v1)."""
    names = category_names()
    image_sets: List[set] = [set() for _ in names]
    instances = np.zeros(len(names), dtype=np.int64)
    for ann in train_annotations:
        image_sets[ann["category_id"] - 1].add(ann["image_id"])
        instances[ann["category_id"] - 1] += 1
    cats = []
    for i, name in enumerate(names):
        colour, shape = name.split("_", 1)
        cats.append(
            {
                "id": i + 1,
                "name": name,
                "synonyms": [name],
                "def": f"a {colour} {shape} drawn on a cluttered background",
                "synset": f"{name}.n.01",
                "frequency": _frequency(len(image_sets[i])),
                "image_count": len(image_sets[i]),
                "instance_count": int(instances[i]),
            }
        )
    return cats


def _dump_json(obj: dict, path: Path) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def is_complete(out_dir: str | os.PathLike) -> bool:
    """True if out_dir holds a finished lt_shapes dataset written by this generator version."""
    info = Path(out_dir) / INFO_JSON
    if not info.is_file() or not (Path(out_dir) / TRAIN_JSON).is_file() or not (Path(out_dir) / VAL_JSON).is_file():
        return False
    try:
        return json.loads(info.read_text()).get("generator_version") == GENERATOR_VERSION
    except (OSError, ValueError):
        return False


def _work_folder_pattern(name: str) -> re.Pattern:
    """The names of a generation's work folders for dataset folder `name`: `.<name>.tmp-<host>.<pid>.<random>` (the
    dataset being written) and `.<name>.old-<host>.<pid>` (the previous one, moved aside during the swap)."""
    return re.compile(rf"^\.{re.escape(name)}\.(?:tmp|old)-(?P<host>[^.]+)\.(?P<pid>\d+)(?:\..*)?$")


def remove_stale_work_folders(out_dir: str | os.PathLike) -> List[Path]:
    """Remove the work folders that a killed generation into `out_dir` left beside it: only those of this host whose
    writer process is gone (a generation running now, another host's on a shared file system and folders of the
    older naming without a process id are kept). Returns the removed folders."""
    out = Path(out_dir).expanduser().resolve()
    if not out.parent.is_dir():
        return []
    pattern, host, removed = _work_folder_pattern(out.name), host_name(), []
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir() or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        logger.warning(
            "lt_shapes: removed %d work folder(s) of an interrupted generation beside %s: %s",
            len(removed),
            out,
            ", ".join(p.name for p in removed),
        )
    return removed


def generate_lt_shapes(out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False, **spec_overrides) -> dict:
    """Generate lt_shapes into out_dir (see module doc) and return its summary (also saved as lt_shapes_info.json).

    spec_overrides: fields of `LTShapesSpec` (num_train_images, num_val_images, image_size, ...).
    Everything is written into a temporary sibling folder that is renamed onto out_dir at the end, so an
    interrupted run never leaves a dataset that looks complete. An existing complete dataset is kept
    unless overwrite=True; a non-empty out_dir without this generator's marker (lt_shapes_info.json, written last) is
    never touched, even if it holds lt_shapes-like files: they may be a user's edited copy.
    """
    spec = LTShapesSpec(seed=seed, **spec_overrides)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        if not (out / INFO_JSON).exists():
            present = sorted(p.name for p in out.iterdir())
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise FileExistsError(
                f"{out} holds files ({shown}) but no {INFO_JSON}, the marker lt-detectron's generator writes last: "
                "it is not an lt_shapes dataset this project wrote, and it is not replaced. Fix: point "
                "DATASETS.LT_SHAPES_DIR (or $LT_SHAPES_DIR, or --out) at an empty or new folder; if the files are a "
                "leftover, delete the folder yourself."
            )
        if is_complete(out) and not overwrite:
            raise FileExistsError(f"{out} already holds an lt_shapes dataset; pass overwrite=True (CLI: --overwrite).")
    was_complete = is_complete(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_work_folders(out)
    plan = plan_lt_shapes(spec)
    # Host and process id in the name: a later generation can tell whether its writer is gone.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{host_name()}.{os.getpid()}.", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would otherwise stick to the renamed dataset folder
    try:
        train_images, train_anns = _render_split("train", plan["train"], 1, 1, spec, tmp)
        val_images, val_anns = _render_split(
            "val", plan["val"], spec.num_train_images + 1, len(train_anns) + 1, spec, tmp
        )
        categories = _categories(train_anns)
        info = {"description": "lt_shapes: synthetic long-tailed shapes (lt-detectron)", "version": "1.0"}
        for split, images, anns in (("train", train_images, train_anns), ("val", val_images, val_anns)):
            payload = {"info": info, "licenses": [], "images": images, "annotations": anns, "categories": categories}
            _dump_json(payload, tmp / (TRAIN_JSON if split == "train" else VAL_JSON))
        groups = {g: sum(c["frequency"] == g for c in categories) for g in "rcf"}
        summary = {
            "generator_version": GENERATOR_VERSION,
            "spec": asdict(spec),
            "num_classes": len(categories),
            "classes_per_group": groups,
            "train": {"images": len(train_images), "instances": len(train_anns)},
            "val": {"images": len(val_images), "instances": len(val_anns)},
        }
        _dump_json(summary, tmp / INFO_JSON)
        if was_complete or not is_complete(out):
            _swap_into_place(tmp, out)
        # else: another process finished the same dataset while we rendered (first use by several workers).
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename tmp onto out; an old dataset is moved aside first and deleted only after the swap."""
    old = None
    if out.exists():
        if not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.with_name(f".{out.name}.old-{host_name()}.{os.getpid()}")
            os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        # Another process finished the same dataset first (e.g. two workers on first use): keep theirs.
        if not is_complete(out):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------ balanced pre-training split

# Random-stream tag of the balanced split's images (the train and val splits use 1 and 2), so a balanced image
# never repeats a train or val image even with the same seed; pre-training also uses a different seed.
BALANCED_STREAM = 3


def plan_balanced(images_per_class: int, seed: int = 1000, classes_per_image: int = 3) -> List[List[int]]:
    """Class layout of a class-balanced split: every class in exactly `images_per_class` images.

    Same generator, same image statistics as the train split (2-6 objects, repeated instances of present classes);
    only the class frequencies are uniform. ceil(C * images_per_class / classes_per_image) images.
    """
    if images_per_class < 1 or not 1 <= classes_per_image <= MAX_DISTINCT_CLASSES:
        raise ValueError(
            f"plan_balanced: need images_per_class >= 1 and 1 <= classes_per_image <= {MAX_DISTINCT_CLASSES}, "
            f"got {images_per_class}, {classes_per_image}"
        )
    num_classes = len(category_names())
    num_images = -(-num_classes * images_per_class // classes_per_image)
    rng = np.random.default_rng([seed, BALANCED_STREAM, 0])
    counts = np.full(num_classes, images_per_class, dtype=np.int64)
    return _instances_per_image(_assign_classes(counts, num_images, rng), rng)


def render_balanced(plan: List[List[int]], seed: int = 1000, spec: LTShapesSpec = LTShapesSpec()):
    """Yield (image uint8 RGB HxWx3, [(class index, visible mask), ...]) for each image of `plan` (in memory).

    Each image has its own random stream (seed, BALANCED_STREAM, index), like the train and val splits.
    """
    for k, classes in enumerate(plan):
        yield _render(classes, np.random.default_rng([seed, BALANCED_STREAM, k + 1]), spec)


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
