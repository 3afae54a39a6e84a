"""The evaluator's RLE kernels (lt_detectron/evaluation/_rle.c) give pycocotools' area, box and IoU exactly."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils

from lt_detectron.evaluation._rle import decode, iou


def _masks(seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for h, w in [(7, 5), (40, 33), (64, 64), (1, 9)]:
        for kind in range(12):
            m = np.zeros((h, w), dtype=np.uint8)
            if kind == 1:
                m[:] = 1
            elif kind == 2:
                m[0, 0] = 1  # foreground first: the first run is empty
            elif kind >= 3:
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                m[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = 1
                m &= (rng.random((h, w)) < 0.8).astype(np.uint8) if kind % 2 else 1
            out.append(mask_utils.encode(np.asfortranarray(m)))
    return out


def _decoded(rles, escaped=False):
    counts = [r["counts"] for r in rles]
    if escaped:  # as in a json file: each backslash written as two
        counts = [json.dumps(c.decode())[1:-1].encode() for c in counts]
    lengths = np.array([len(c) for c in counts], dtype=np.int64)
    ends = np.cumsum(lengths)
    hw = np.array([r["size"] for r in rles], dtype=np.int64)
    return decode(b"".join(counts), ends - lengths, ends, hw, escaped)


def test_area_box_iou_equal_pycocotools():
    rles = _masks()
    assert any(b"\\" in r["counts"] for r in rles)  # the escaped case below is exercised
    for escaped in (False, True):
        runs, start, area, bbox, bad = _decoded(rles, escaped)
        assert not np.frombuffer(bad, np.uint8).any()
        assert np.array_equal(np.frombuffer(area), mask_utils.area(rles).astype(np.float64))
        assert np.array_equal(np.frombuffer(bbox).reshape(-1, 4), mask_utils.toBbox(rles))
    same = [i for i, r in enumerate(rles) if r["size"] == [40, 33]]
    d, g = np.meshgrid(same, same, indexing="ij")
    got = np.frombuffer(iou(runs, start, runs, start, d.ravel(), g.ravel())).reshape(len(same), len(same))
    ref = np.asarray(mask_utils.iou([rles[i] for i in same], [rles[i] for i in same], [0] * len(same)))
    ref = np.where(mask_utils.iou(mask_utils.toBbox([rles[i] for i in same]).tolist(), mask_utils.toBbox(
        [rles[i] for i in same]).tolist(), [0] * len(same)) > 0, ref, 0)  # fmt: skip
    assert np.array_equal(got, ref)


def test_malformed_strings_flagged():
    good = mask_utils.encode(np.asfortranarray(np.eye(6, dtype=np.uint8)))["counts"]
    cases = [good, good + b"!", good[:-1] + b"o", good[:-2], b""]  # fine, outside the alphabet, cut off, short
    lengths = np.array([len(c) for c in cases], dtype=np.int64)
    ends = np.cumsum(lengths)
    hw = np.full((len(cases), 2), 6, dtype=np.int64)
    *_, bad = decode(b"".join(cases), ends - lengths, ends, hw, False)
    assert np.frombuffer(bad, np.uint8).tolist() == [0, 1, 1, 1, 1]
