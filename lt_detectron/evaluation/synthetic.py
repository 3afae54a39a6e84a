"""Deterministic LVIS-format ground truth and detections for testing and benchmarking the evaluators.

`make_lvis_gt` draws images whose categories follow a long-tailed (Zipf) popularity, with polygon masks, federated
`neg_category_ids` and `not_exhaustive_category_ids`, and r/c/f frequency groups; `make_lvis_results` draws the
output of an imperfect detector on it: jittered copies of ground-truth objects (right class, confused classes),
plus background boxes of random classes, each with a box and a compressed-RLE mask as Detectron2 writes them.
Scores are rounded to 3 decimals so that ties occur.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pycocotools.mask as mask_utils

__all__ = ["make_lvis_gt", "make_lvis_results"]

_FREQ_SHARE = (("r", 0.28), ("c", 0.38), ("f", 0.34))  # LVIS v1: 337 / 461 / 405 of 1,203 classes


def _polygon_in_box(rng: np.random.Generator, x: float, y: float, w: float, h: float, n: int = 8) -> List[float]:
    """A star-shaped polygon with n vertices inside the box (x, y, w, h), as a flat [x0, y0, x1, y1, ...] list."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(0.6, 1.0, n)
    px = x + w / 2 + np.cos(angles) * radius * w / 2
    py = y + h / 2 + np.sin(angles) * radius * h / 2
    return [round(float(v), 2) for pair in zip(px, py) for v in pair]


def _random_box(rng: np.random.Generator, width: int, height: int) -> List[float]:
    w = float(rng.uniform(2, width * 0.6))
    h = float(rng.uniform(2, height * 0.6))
    x = float(rng.uniform(0, width - w))
    y = float(rng.uniform(0, height - h))
    return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]


def make_lvis_gt(
    num_images: int,
    num_classes: int,
    seed: int = 0,
    mean_categories_per_image: float = 3.0,
    mean_negatives_per_image: float = 3.0,
    not_exhaustive_prob: float = 0.1,
    absent_classes: int = 0,
) -> dict:
    """LVIS v1-format ground truth: images (with neg/not-exhaustive lists), polygon annotations, categories.

    `absent_classes` of the rarest categories get no annotation (classes absent from val). Image ids are not
    contiguous (they step by 1-3) so that code relying on contiguous ids fails.

    Args:
        num_images: the number of images.
        num_classes: the number of categories (ids 1..num_classes, long-tailed popularity in a random order).
        seed: random seed; the same arguments give the same data.
        mean_categories_per_image: mean number of annotated categories per image (1 + Poisson).
        mean_negatives_per_image: mean length of an image's `neg_category_ids` (Poisson).
        not_exhaustive_prob: probability that an annotated category of an image is listed as not exhaustive.
        absent_classes: the number of rarest categories without annotations.

    Returns:
        The ground-truth dict (info, images, annotations, categories, licenses); each category has a frequency
        r/c/f by popularity rank and the image_count / instance_count of this data.
    """
    rng = np.random.default_rng(seed)
    cat_ids = np.arange(1, num_classes + 1)
    popularity = 1.0 / np.arange(1, num_classes + 1) ** 0.9
    popularity = popularity[rng.permutation(num_classes)]
    present = np.ones(num_classes, dtype=bool)
    if absent_classes:
        present[np.argsort(popularity)[:absent_classes]] = False
    pos_p = np.where(present, popularity, 0.0)
    pos_p /= pos_p.sum()
    neg_p = popularity / popularity.sum()

    images, annotations = [], []
    image_id = 0
    for _ in range(num_images):
        image_id += int(rng.integers(1, 4))
        width, height = int(rng.integers(160, 641)), int(rng.integers(160, 481))
        n_pos = min(1 + rng.poisson(max(mean_categories_per_image - 1, 0)), int(present.sum()))
        pos = rng.choice(cat_ids, size=n_pos, replace=False, p=pos_p) if n_pos else np.zeros(0, dtype=int)
        n_neg = min(rng.poisson(mean_negatives_per_image), num_classes - n_pos)
        neg_candidates = np.setdiff1d(cat_ids, pos)
        neg_w = neg_p[neg_candidates - 1] / neg_p[neg_candidates - 1].sum()
        neg = rng.choice(neg_candidates, size=n_neg, replace=False, p=neg_w) if n_neg else np.zeros(0, dtype=int)
        not_exhaustive = [int(c) for c in pos if rng.random() < not_exhaustive_prob]
        images.append(
            {
                "id": image_id,
                "width": width,
                "height": height,
                "file_name": f"{image_id:012d}.jpg",
                "neg_category_ids": sorted(int(c) for c in neg),
                "not_exhaustive_category_ids": sorted(not_exhaustive),
            }
        )
        for c in pos:
            for _ in range(1 + rng.geometric(0.5) - 1 + int(rng.random() < 0.3) * int(rng.integers(1, 5))):
                x, y, w, h = _random_box(rng, width, height)
                poly = _polygon_in_box(rng, x, y, w, h)
                rle = mask_utils.frPyObjects([poly], height, width)
                area = float(mask_utils.area(mask_utils.merge(rle)))
                bbox = [round(float(v), 2) for v in mask_utils.toBbox(mask_utils.merge(rle))]
                if area <= 0:
                    continue
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(c),
                        "bbox": bbox,
                        "area": area,
                        "segmentation": [poly],
                    }
                )

    image_count = np.zeros(num_classes + 1, dtype=int)
    instance_count = np.zeros(num_classes + 1, dtype=int)
    seen = set()
    for ann in annotations:
        instance_count[ann["category_id"]] += 1
        if (ann["image_id"], ann["category_id"]) not in seen:
            seen.add((ann["image_id"], ann["category_id"]))
    for _, c in seen:
        image_count[c] += 1
    # Frequency groups as LVIS assigns them from training counts; here a fixed share per popularity rank so that
    # every group is populated at any size.
    order = np.argsort(-popularity)
    freq = np.empty(num_classes, dtype=object)
    start = 0
    for i, (label, share) in enumerate(_FREQ_SHARE[::-1]):
        stop = num_classes if i == len(_FREQ_SHARE) - 1 else start + int(round(share * num_classes))
        freq[order[start:stop]] = label
        start = stop
    categories = [
        {
            "id": int(c),
            "name": f"class_{int(c):04d}",
            "synset": f"class_{int(c):04d}.n.01",
            "frequency": str(freq[c - 1]),
            "image_count": int(image_count[c]),
            "instance_count": int(instance_count[c]),
        }
        for c in cat_ids
    ]
    return {"info": {"description": "synthetic LVIS-format data"}, "images": images, "annotations": annotations,
            "categories": categories, "licenses": []}  # fmt: skip


def make_lvis_results(
    gt: dict,
    seed: int = 0,
    max_dets_per_image: int = 300,
    min_dets_per_image: int = 0,
    dets_per_object: float = 3.0,
    with_masks: bool = True,
    empty_image_prob: float = 0.05,
    background_listed_prob: float = 0.15,
    skip_classes: Optional[List[int]] = None,
) -> List[Dict]:
    """Detector-like results on `gt`, in Detectron2's `lvis_instances_results.json` format.

    Per image: about `dets_per_object` jittered copies of every ground-truth object (mostly the right class, some a
    confused class of the image's positive/negative lists, some any class), then background boxes of random classes
    up to a count drawn in [min_dets_per_image, max_dets_per_image], a `background_listed_prob` share of them of a
    class the image's ground truth lists (as a detector fires low-score boxes on the classes present).
    `empty_image_prob` of images get no detection; `skip_classes` never appear (classes with no detection).

    Args:
        gt: a ground-truth dict with polygon segmentations, e.g. from `make_lvis_gt`.
        seed: random seed.
        max_dets_per_image: upper end of the drawn per-image count.
        min_dets_per_image: lower end of the drawn per-image count.
        dets_per_object: mean number of copies of each ground-truth object (Poisson).
        with_masks: add an RLE `segmentation` (counts as a string) to every result.
        empty_image_prob: probability that an image gets no detection.
        background_listed_prob: share of the background boxes whose class is one the image's ground truth lists.
        skip_classes: category ids that never appear.

    Returns:
        The result dicts (image_id, category_id, bbox in XYWH, score[, segmentation]).
    """
    rng = np.random.default_rng(seed + 1_000_003)
    cat_ids = np.array(sorted(c["id"] for c in gt["categories"]))
    if skip_classes:
        cat_ids = np.setdiff1d(cat_ids, skip_classes)
    skip = np.asarray(sorted(skip_classes or []), dtype=np.int64)
    by_image: Dict[int, list] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    results: List[Dict] = []
    for image in gt["images"]:
        if rng.random() < empty_image_prob:
            continue
        width, height = image["width"], image["height"]
        anns = by_image.get(image["id"], [])
        listed = np.array([a["category_id"] for a in anns] + list(image["neg_category_ids"]), dtype=np.int64)
        listed = np.setdiff1d(listed, skip)
        n_total = int(rng.integers(min_dets_per_image, max_dets_per_image + 1))
        # copies of the ground-truth objects, jittered
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        copies = np.repeat(np.arange(len(anns)), rng.poisson(dets_per_object, len(anns)))
        obj = boxes[copies]
        jit = rng.normal(0, 0.1, obj.shape) * obj[:, [2, 3, 2, 3]]
        obj_w = np.maximum(obj[:, 2] + jit[:, 2], 1.0)
        obj_h = np.maximum(obj[:, 3] + jit[:, 3], 1.0)
        obj_x = np.clip(obj[:, 0] + jit[:, 0], 0, np.maximum(width - obj_w, 0))
        obj_y = np.clip(obj[:, 1] + jit[:, 1], 0, np.maximum(height - obj_h, 0))
        true_cat = np.array([anns[i]["category_id"] for i in copies], dtype=np.int64)
        u = rng.random(len(copies))
        other = listed[rng.integers(0, len(listed), len(copies))] if len(listed) else true_cat
        obj_cat = np.where(u < 0.6, true_cat, np.where(u < 0.85, other, cat_ids[rng.integers(0, len(cat_ids), len(u))]))
        obj_score = rng.beta(4, 2, len(copies))
        # background boxes of random classes
        n_bg = max(n_total - len(copies), 0)
        bg_w = rng.uniform(2, width * 0.6, n_bg)
        bg_h = rng.uniform(2, height * 0.6, n_bg)
        bg_x = rng.uniform(0, 1, n_bg) * (width - bg_w)
        bg_y = rng.uniform(0, 1, n_bg) * (height - bg_h)
        bg_cat = cat_ids[rng.integers(0, len(cat_ids), n_bg)]
        if len(listed):
            use_listed = rng.random(n_bg) < background_listed_prob
            bg_cat = np.where(use_listed, listed[rng.integers(0, len(listed), n_bg)], bg_cat)
        bg_score = rng.beta(1, 6, n_bg)

        xywh = np.round(
            np.stack([np.r_[obj_x, bg_x], np.r_[obj_y, bg_y], np.r_[obj_w, bg_w], np.r_[obj_h, bg_h]], 1), 2
        )
        cats = np.r_[obj_cat, bg_cat].astype(np.int64)
        keep = ~np.isin(cats, skip)
        xywh, cats = xywh[keep], cats[keep]
        scores = np.round(np.r_[obj_score, bg_score][keep], 3)
        masks: List[Optional[dict]] = [None] * len(cats)
        if with_masks and len(cats):
            n_vert = 6
            angles = np.sort(rng.uniform(0, 2 * np.pi, (len(cats), n_vert)), axis=1)
            radius = rng.uniform(0.6, 1.0, (len(cats), n_vert))
            px = xywh[:, :1] + xywh[:, 2:3] / 2 * (1 + np.cos(angles) * radius)
            py = xywh[:, 1:2] + xywh[:, 3:4] / 2 * (1 + np.sin(angles) * radius)
            polys = [p.tolist() for p in np.round(np.stack([px, py], 2).reshape(len(cats), -1), 2)]
            # copies of objects: the object's polygon, moved and scaled with the jittered box, vertices jittered
            src = np.flatnonzero(keep[: len(copies)])
            for row, i in enumerate(src.tolist()):
                a = anns[copies[i]]
                poly = np.array(a["segmentation"][0], dtype=np.float64).reshape(-1, 2)
                x0, y0, w0, h0 = a["bbox"]
                sx, sy = xywh[row, 2] / max(w0, 1e-6), xywh[row, 3] / max(h0, 1e-6)
                poly = (poly - [x0, y0]) * [sx, sy] + xywh[row, :2]
                poly += rng.normal(0, 0.03, poly.shape) * xywh[row, 2:4]
                polys[row] = np.round(poly, 2).ravel().tolist()
            masks = mask_utils.frPyObjects(polys, height, width)
            for rle in masks:
                rle["counts"] = rle["counts"].decode("ascii")
        for box, cat, score, rle in zip(xywh.tolist(), cats.tolist(), scores.tolist(), masks):
            det = {"image_id": image["id"], "category_id": cat, "bbox": box, "score": score}
            if rle is not None:
                det["segmentation"] = rle
            results.append(det)
    return results
