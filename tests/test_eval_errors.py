"""Bad input to the fast LVIS evaluator: one clear error naming the first bad record, its field and the fix; and the
Detectron2-layout fast reader of results files agreeing with json.load."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from lt_detectron.evaluation import LVISInputError, evaluate_lvis, load_detections, load_ground_truth
from lt_detectron.evaluation.fast_json import read_results_columns
from lt_detectron.evaluation.synthetic import make_lvis_gt, make_lvis_results


@pytest.fixture(scope="module")
def data():
    gt = make_lvis_gt(8, 12, seed=3)
    res = make_lvis_results(gt, seed=3, max_dets_per_image=20, empty_image_prob=0.0)
    return gt, res


def _broken(res, index, **changes):
    res = copy.deepcopy(res)
    for key, value in changes.items():
        if value is KeyError:
            del res[index][key]
        else:
            res[index][key] = value
    return res


CASES = [
    ("image_id", {"image_id": 999_999}, "not an image of the ground truth"),
    ("category_id", {"category_id": 5_000}, "thing_dataset_id_to_contiguous_id"),
    ("category_id", {"category_id": 2.0}, "integers"),
    ("bbox", {"bbox": [1.0, 2.0, 3.0]}, "[x, y, width, height]"),
    ("bbox", {"bbox": [1.0, 2.0, -3.0, 4.0]}, "width, height >= 0"),
    ("score", {"score": float("nan")}, "finite"),
    ("score", {"score": -0.5}, ">= 0"),
    ("score", {"score": KeyError}, "missing"),
]


@pytest.mark.parametrize("as_file", [False, True])
@pytest.mark.parametrize("field,change,fix", CASES)
def test_bad_record_is_named(data, tmp_path, as_file, field, change, fix):
    gt, res = data
    bad = _broken(res, 7, **change)
    source = bad
    if as_file:
        source = tmp_path / "results.json"
        source.write_text(json.dumps(bad))
    with pytest.raises(LVISInputError) as err:
        evaluate_lvis(gt, source, ["bbox"], workers=1)
    msg = str(err.value)
    assert "[7]" in msg and repr(field) in msg and fix in msg, msg


@pytest.mark.parametrize("workers", [1, 2])
def test_undecodable_mask_is_named(data, workers):
    gt, res = data
    bad = copy.deepcopy(res)
    bad[4]["segmentation"] = {"size": bad[4]["segmentation"]["size"], "counts": "zz!!"}
    with pytest.raises(LVISInputError, match=r"record \[4\] field 'segmentation' does not decode"):
        evaluate_lvis(gt, bad, ["segm"], workers=workers)


def test_mask_of_the_wrong_size_is_named(data):
    gt, res = data
    bad = copy.deepcopy(res)
    bad[2]["segmentation"]["size"] = [3, 3]
    with pytest.raises(LVISInputError, match=r"record \[2\] field 'segmentation' has size \[3, 3\]"):
        evaluate_lvis(gt, bad, ["segm"], workers=1)


def test_non_lvis_ground_truth(data):
    gt, res = data
    coco = copy.deepcopy(gt)
    for img in coco["images"]:
        del img["neg_category_ids"]
    with pytest.raises(LVISInputError, match=r"images\[0\].*'neg_category_ids'.*LVIS-format"):
        evaluate_lvis(coco, res, ["bbox"])
    no_freq = copy.deepcopy(gt)
    del no_freq["categories"][1]["frequency"]
    with pytest.raises(LVISInputError, match=r"categories\[1\].*frequency"):
        load_ground_truth(no_freq)
    with pytest.raises(LVISInputError, match="not an object"):
        load_ground_truth([1, 2])


def test_results_not_a_list(data, tmp_path):
    gt, _ = data
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(LVISInputError, match="list of"):
        evaluate_lvis(gt, path, ["bbox"])


def test_fast_reader_matches_json_load(data, tmp_path):
    gt, res = data
    res = copy.deepcopy(res)
    path = tmp_path / "lvis_instances_results.json"
    path.write_text(json.dumps(res))  # Detectron2 writes json.dumps(list) with this key order
    cols = read_results_columns(path)
    assert cols is not None and len(cols.score) == len(res)
    g = load_ground_truth(gt)
    a = load_detections(path, g, need_bbox=True, need_segm=True)
    b = load_detections(res, g, need_bbox=True, need_segm=True)
    assert np.array_equal(a.bbox, b.bbox) and np.array_equal(a.score, b.score)
    assert all(a.segmentation[i]["counts"].decode() == b.segmentation[i]["counts"] for i in range(len(res)))
    # another key order: the fast reader declines and json.load reads it, to the same numbers
    other = tmp_path / "other.json"
    other.write_text(json.dumps([dict(reversed(list(r.items()))) for r in res]))
    assert read_results_columns(other) is None
    x = evaluate_lvis(gt, other, ["bbox", "segm"], workers=1)
    y = evaluate_lvis(gt, path, ["bbox", "segm"], workers=1)
    for t in ("bbox", "segm"):
        assert x[t].summary == y[t].summary


def test_fast_reader_copies_only_the_masks_asked_for(data, tmp_path):
    gt, res = data
    res = copy.deepcopy(res)
    first = res[0]["segmentation"]["counts"]
    res[0]["segmentation"]["counts"] = "\\" + first[1:]  # a backslash, escaped in json
    path = tmp_path / "lvis_instances_results.json"
    path.write_text(json.dumps(res))
    cols = read_results_columns(path, with_boxes=False)
    assert cols is not None and cols.bbox is None
    seg = cols.segmentation
    assert seg.counts is None and seg.source is not None  # strings left in the file's bytes until asked for
    rows = [len(res) - 1, 0, 3]
    taken = seg.take(rows)
    assert taken.counts == [res[i]["segmentation"]["counts"].encode() for i in rows]
    assert seg.dicts(0, 2) == [{"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}
                               for r in res[:2]]  # fmt: skip
    assert taken[1]["counts"].startswith(b"\\") and not taken[1]["counts"].startswith(b"\\\\")
    # a `}` inside a mask string is still a JSON string: read as it is (the evaluator's RLE check names the record)
    res[0]["segmentation"]["counts"] = first
    res[2]["segmentation"]["counts"] = res[2]["segmentation"]["counts"][:-1] + "}"
    path.write_text(json.dumps(res))
    assert read_results_columns(path).segmentation[2]["counts"].endswith(b"}")
    with pytest.raises(LVISInputError, match=r"record \[2\] field 'segmentation'"):
        evaluate_lvis(gt, path, ["segm"], workers=1)


def test_concurrent_reading_same_columns_and_ground_truth_error_first(data, tmp_path):
    """With more than one worker the results file is read while the ground truth loads (load_inputs): the same
    detections as one after the other, and a bad ground truth is still the error reported."""
    from lt_detectron.evaluation.inputs import load_inputs

    gt, res = data
    g, r = tmp_path / "gt.json", tmp_path / "lvis_instances_results.json"
    g.write_text(json.dumps(gt))
    r.write_text(json.dumps(res))
    _, a = load_inputs(g, r, need_bbox=True, need_segm=True, concurrent=True)
    _, b = load_inputs(g, r, need_bbox=True, need_segm=True, concurrent=False)
    for key in ("img_index", "cat_index", "score", "bbox"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    assert a.segmentation.dicts(0, len(res)) == b.segmentation.dicts(0, len(res))
    bad = copy.deepcopy(gt)
    bad["categories"][0]["frequency"] = "x"
    g.write_text(json.dumps(bad))
    with pytest.raises(LVISInputError, match="frequency"):
        evaluate_lvis(g, r, ["bbox"], workers=2)


def test_concurrent_reading_of_another_layout_is_not_read_twice(data, tmp_path, monkeypatch):
    """A results file the fast reader declines goes straight to json.load: the reader is not run on it again."""
    from lt_detectron.evaluation import inputs

    gt, res = data
    g, r = tmp_path / "gt.json", tmp_path / "results.json"
    g.write_text(json.dumps(gt))
    r.write_text(json.dumps([dict(reversed(list(x.items()))) for x in res]))  # keys in another order
    calls = []
    reader = inputs.read_results_columns
    monkeypatch.setattr(inputs, "read_results_columns", lambda *a, **k: calls.append(a) or reader(*a, **k))
    _, dets = inputs.load_inputs(g, r, need_bbox=True, need_segm=True, concurrent=True)
    assert len(calls) == 1 and len(dets) == len(res)
    assert np.array_equal(dets.score, [x["score"] for x in res])
