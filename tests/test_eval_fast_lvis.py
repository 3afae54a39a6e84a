"""The fast LVIS evaluator against lvis-api's LVISEval (the oracle) on generated LVIS-format data: every summary
number and every per-class AP within 1e-9, bbox and segm, standard and Fixed AP; a hand-computed Fixed AP case."""

from __future__ import annotations

import copy
from collections import defaultdict
from functools import lru_cache

import numpy as np
import pytest

from lt_detectron.data import patch_lvis_numpy_aliases
from lt_detectron.evaluation import evaluate_lvis
from lt_detectron.evaluation.fast_lvis import per_class_ap
from lt_detectron.evaluation.synthetic import make_lvis_gt, make_lvis_results

TOL = 1e-9

# (seed, images, classes, absent classes, max dets/image, min dets/image, classes with no detection)
CASES = {
    "small": (0, 30, 25, 2, 120, 0, (3,)),
    "over300": (1, 12, 40, 0, 420, 290, ()),  # many images above the 300 cap
    "wide": (2, 45, 80, 5, 80, 0, (7, 11)),
}


@lru_cache(maxsize=None)
def _data(case: str):
    seed, n_img, n_cls, absent, max_d, min_d, skip = CASES[case]
    gt = make_lvis_gt(n_img, n_cls, seed=seed, absent_classes=absent)
    res = make_lvis_results(gt, seed=seed, max_dets_per_image=max_d, min_dets_per_image=min_d, skip_classes=list(skip))
    return gt, res


def _lvis_api(gt: dict, results: list, iou_type: str, fixed_k: int | None = None):
    """lvis-api 0.5.3 as Detectron2 calls it (segm: boxes dropped), or Fixed AP as Dave et al.'s script does."""
    patch_lvis_numpy_aliases()
    from lvis import LVIS, LVISEval, LVISResults

    results = copy.deepcopy(results)
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)
    lvis_gt = LVIS.__new__(LVIS)
    lvis_gt.dataset = copy.deepcopy(gt)
    lvis_gt.logger = __import__("logging").getLogger("lvis")
    lvis_gt._create_index()
    if fixed_k is None:
        dt = LVISResults(lvis_gt, results, max_dets=300)
    else:
        by_cat = defaultdict(list)
        for r in results:
            by_cat[r["category_id"]].append(r)
        results = [
            r for anns in by_cat.values() for r in sorted(anns, key=lambda a: a["score"], reverse=True)[:fixed_k]
        ]
        dt = LVISResults(lvis_gt, results, max_dets=-1)
    ev = LVISEval(lvis_gt, dt, iou_type)
    if fixed_k is not None:
        ev.params.max_dets = -1
    ev.run()
    return dict(ev.get_results()), per_class_ap(ev.eval["precision"])


def _assert_same(fast, ref_summary, ref_per_class):
    mine = fast.summary_lvis_names()
    assert set(mine) == set(ref_summary)
    diffs = {k: abs(mine[k] - ref_summary[k]) for k in ref_summary}
    assert max(diffs.values()) <= TOL, diffs
    assert np.array_equal(np.isnan(fast.per_class_ap), np.isnan(ref_per_class))
    ok = ~np.isnan(ref_per_class)
    assert ok.sum() > 0
    assert np.max(np.abs(fast.per_class_ap[ok] - ref_per_class[ok])) <= TOL


def test_generated_cases_cover_the_edge_cases():
    seen = defaultdict(bool)
    for case in CASES:
        gt, res = _data(case)
        per_image = defaultdict(int)
        for r in res:
            per_image[r["image_id"]] += 1
        seen["image without detections"] |= len(per_image) < len(gt["images"])
        seen["image over 300"] |= max(per_image.values()) > 300
        cats_with_gt = {a["category_id"] for a in gt["annotations"]}
        seen["class absent from val"] |= len(cats_with_gt) < len(gt["categories"])
        seen["class without detections"] |= len({r["category_id"] for r in res}) < len(gt["categories"])
        neg = {(img["id"], c) for img in gt["images"] for c in img["neg_category_ids"]}
        seen["detection of a negative class"] |= any((r["image_id"], r["category_id"]) in neg for r in res)
        seen["not exhaustive"] |= any(img["not_exhaustive_category_ids"] for img in gt["images"])
        scores = [r["score"] for r in res]
        seen["score ties"] |= len(set(scores)) < len(scores)
    assert all(seen.values()) and len(seen) == 7, dict(seen)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_matches_lvis_api(case, iou_type):
    gt, res = _data(case)
    fast = evaluate_lvis(gt, res, [iou_type], workers=2)[iou_type]
    _assert_same(fast, *_lvis_api(gt, res, iou_type))
    assert fast.summary["AP"] > 0.05  # not a degenerate case


@pytest.mark.parametrize(
    "case,iou_type,k", [("small", "bbox", 10_000), ("wide", "segm", 10_000), ("over300", "bbox", 60)]
)
def test_fixed_ap_matches_lvis_api(case, iou_type, k):
    gt, res = _data(case)
    counts = np.bincount([r["category_id"] for r in res])
    if k < 10_000:
        assert counts.max() > k  # a class with more than K detections
    fast = evaluate_lvis(gt, res, [iou_type], fixed_ap=True, fixed_ap_k=k, workers=1)[iou_type]
    _assert_same(fast, *_lvis_api(gt, res, iou_type, fixed_k=k))


def test_workers_do_not_change_the_numbers():
    gt, res = _data("wide")
    one = evaluate_lvis(gt, res, ["bbox"], workers=1)["bbox"]
    two = evaluate_lvis(gt, res, ["bbox"], workers=2)["bbox"]
    assert np.array_equal(one.precision, two.precision) and np.array_equal(one.recall, two.recall)
    assert one.summary == two.summary


def _toy():
    """Class 1 ('f'): 3 objects in 2 images. Image 1 also has 299 high-scoring detections of class 2 (listed nowhere,
    so ignored by the federated rule), which push class 1's true positive (score 0.5) out of the per-image top 300."""
    images = [
        {"id": 1, "height": 100, "width": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []},
        {"id": 2, "height": 100, "width": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []},
    ]
    boxes = {"A": [0, 0, 20, 20], "B": [50, 50, 20, 20], "C": [10, 10, 30, 30]}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": boxes["A"], "area": 400.0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": boxes["B"], "area": 400.0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": boxes["C"], "area": 900.0},
    ]
    cats = [{"id": 1, "name": "one", "frequency": "f"}, {"id": 2, "name": "two", "frequency": "r"}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    res = [{"image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5], "score": 0.9} for _ in range(299)]
    res += [
        {"image_id": 2, "category_id": 1, "bbox": boxes["C"], "score": 0.7},  # TP
        {"image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "score": 0.6},  # FP
        {"image_id": 1, "category_id": 1, "bbox": boxes["A"], "score": 0.5},  # TP, 301st of image 1
    ]
    return gt, res


def test_fixed_ap_toy_case_by_hand():
    gt, res = _toy()
    # Per-image top 300: class 1 keeps TP 0.7, FP 0.6 -> recall 1/3 at precision 1, so precision 1 at the 34 recall
    # thresholds 0.00..0.33 and 0 above: AP = 34/101 at every IoU threshold (the boxes match exactly).
    std = evaluate_lvis(gt, res, ["bbox"], workers=1)["bbox"]
    assert std.summary["AP"] == pytest.approx(34 / 101, abs=1e-12)
    # Fixed AP keeps all three: precision [1, 1/2, 2/3] at recall [1/3, 1/3, 2/3], interpolated [1, 2/3, 2/3]:
    # 34 thresholds at 1, the 33 thresholds 0.34..0.66 at 2/3 -> AP = (34 + 22) / 101.
    fixed = evaluate_lvis(gt, res, ["bbox"], fixed_ap=True, workers=1)["bbox"]
    assert fixed.summary["AP"] == pytest.approx(56 / 101, abs=1e-12)
    assert fixed.summary["APf"] == fixed.summary["AP"] and fixed.summary["APr"] == -1
    assert np.isnan(fixed.per_class_ap[1]) and fixed.per_class_ap[0] == pytest.approx(56 / 101, abs=1e-12)
    _assert_same(fixed, *_lvis_api(gt, res, "bbox", fixed_k=10_000))


def test_lvis_api_quirks_are_kept():
    """lvis-api stores a match as the ground truth's id, so a match to an annotation with id 0 counts as no match
    (a false positive that still uses up that annotation); of ground truths with equal IoU the later one is taken."""
    gt, res = copy.deepcopy(_toy())
    gt["annotations"][0]["id"] = 0  # box A: the detection at score 0.5 (kept by Fixed AP) matches it
    twin = dict(gt["annotations"][1], id=4)  # a second annotation on box B: equal IoU for a detection on B
    gt["annotations"].append(twin)
    res.append({"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.55})
    fixed = evaluate_lvis(gt, res, ["bbox"], fixed_ap=True, workers=1)["bbox"]
    ref_summary, ref_per_class = _lvis_api(gt, res, "bbox", fixed_k=10_000)
    _assert_same(fixed, ref_summary, ref_per_class)
    # had the id-0 match counted as a true positive, class 1 would have 3 true positives among its 4 detections
    assert fixed.recall[0, 0, 0] == pytest.approx(2 / 4)


def test_fast_reader_boxes_only_file(tmp_path):
    """A results file without masks takes the fast reader too (its own record ending), with json.load's numbers;
    an id written as a float or a record with its keys in another order sends the file to json.load."""
    import json

    from lt_detectron.evaluation.fast_json import read_results_columns

    gt, res = _data("small")
    res = [{k: v for k, v in r.items() if k != "segmentation"} for r in res]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(res))
    cols = read_results_columns(path)
    assert cols is not None and cols.segmentation is None
    assert np.array_equal(cols.bbox, np.array([r["bbox"] for r in res], dtype=float))
    assert np.array_equal(cols.score, [r["score"] for r in res])
    assert np.array_equal(cols.image_id, [r["image_id"] for r in res])
    assert np.array_equal(cols.category_id, [r["category_id"] for r in res])
    for change in ({"category_id": float(res[3]["category_id"])}, "reorder"):
        bad = copy.deepcopy(res)
        bad[3] = dict(reversed(list(bad[3].items()))) if change == "reorder" else dict(bad[3], **change)
        path.write_text(json.dumps(bad))
        assert read_results_columns(path) is None


@pytest.mark.parametrize("with_masks", [False, True])
def test_fast_reader_block_size_does_not_matter(tmp_path, monkeypatch, with_masks):
    """Blocks of 200 bytes (shorter than a record: the streamed reader's buffer grows) read the same columns."""
    import json

    from lt_detectron.evaluation import fast_json

    gt, res = _data("small")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    big = fast_json.read_results_columns(path, with_masks=with_masks)
    monkeypatch.setattr(fast_json, "_BLOCK", 200)
    small = fast_json.read_results_columns(path, with_masks=with_masks)
    assert big is not None and small is not None and len(small.score) == len(res)
    for key in ("image_id", "category_id", "score", "bbox"):
        assert np.array_equal(getattr(big, key), getattr(small, key))
    if with_masks:
        assert big.segmentation.dicts(0, len(res)) == small.segmentation.dicts(0, len(res))


def test_lvis_api_patched_when_first_imported_not_at_start_up():
    """Importing lt_detectron.data does not import lvis (its lvis.vis pulls in matplotlib: ~24 MB at every
    start-up); lvis.eval is patched for NumPy >= 1.24 whenever it is imported later (Detectron2's LVISEvaluator)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy, lt_detectron.data\n"
        "assert 'lvis' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)\n"
        "import lvis.eval\n"
        "assert hasattr(numpy, 'float') or lvis.eval.np.float is float\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
