"""The C reader of Detectron2's results records (lt_detectron/evaluation/_records.c): json.load's numbers bit for
bit, and None (the json.load fallback) for anything outside the layout."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lt_detectron.evaluation._records import parse_records


def _columns(text: bytes, masks: int = 0):
    out = parse_records(memoryview(text)[1:-1], masks, True, 0)  # the list's brackets stripped, as the caller does
    assert out is not None
    n, image_id, category_id, score, bbox, *_ = out
    return np.frombuffer(score, np.float64), np.frombuffer(bbox, np.float64).reshape(n, 4)


def test_numbers_equal_json_load_bitwise():
    rng = random.Random(0)
    values = [0.0, -0.0, 0.1, 1e-7, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0**53, 2.0**53 + 2,
              0.30000000000000004, 9007199254740993.0, 1e22, 1e23, 123.45678955078125, 412.3872375488281]  # fmt: skip
    values += [rng.random() * 10 ** rng.randint(-300, 300) for _ in range(20000)]
    values += [float(np.float32(rng.random() * 1000)) for _ in range(20000)]  # Detectron2's float32 boxes
    values += [round(rng.random() * 1000, rng.randint(0, 4)) for _ in range(20000)]
    records = [{"image_id": i, "category_id": 1, "bbox": [v, -v, 1, 0], "score": v} for i, v in enumerate(values)]
    text = json.dumps(records).encode()
    score, bbox = _columns(text)
    ref = json.loads(text)
    ref_score = np.array([r["score"] for r in ref], dtype=np.float64)
    ref_bbox = np.array([r["bbox"] for r in ref], dtype=np.float64)
    assert np.array_equal(score.view(np.int64), ref_score.view(np.int64))
    assert np.array_equal(bbox.view(np.int64), ref_bbox.view(np.int64))
    # integers and exponents as other writers spell them; "-0" is json.load's integer 0
    text = b'[{"image_id":7,"category_id":-2,"bbox":[1,2E+2,3e-2,-0],"score":-0.0}]'
    score, bbox = _columns(text)
    assert bbox.tolist() == [[1.0, 200.0, 0.03, 0.0]] and np.signbit(score[0]) and not np.signbit(bbox[0, 3])


@pytest.mark.parametrize(
    "record",
    [
        b'{"image_id": 1.0, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}',  # an id written as a float
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": Infinity}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 1}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1, "extra": 2}',
        b'{"category_id": 1, "image_id": 1, "bbox": [1, 2, 3, 4], "score": 1}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 01}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1.}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": "1"}',
        b'{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1} {"image_id": 2}',
    ],
)
def test_anything_else_is_declined(record):
    assert parse_records(record, 0, True, 0) is None


def test_mask_strings_located_not_copied():
    text = b'{"image_id": 3, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5, ' \
           b'"segmentation": {"size": [20, 30], "counts": "ab\\\\c"}}'  # fmt: skip
    n, *_, hw, starts, ends = parse_records(text, 1, False, 100)
    s, e = int(np.frombuffer(starts, np.int64)[0]) - 100, int(np.frombuffer(ends, np.int64)[0]) - 100
    assert n == 1 and np.frombuffer(hw, np.int64).tolist() == [20, 30] and text[s:e] == b"ab\\\\c"
    assert parse_records(text.replace(b"\\\\", b"\\n"), 1, False, 0) is None  # an escape other than a backslash's
    assert parse_records(text, 0, False, 0) is None  # masks where the layout has none
