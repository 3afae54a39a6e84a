"""Read a results file written by Detectron2 (`json.dumps` of `instances_to_coco_json` records) straight into columns.

`json.load` builds a dict, a list and five number objects per detection: on 1.4 M detections that alone costs more
than the whole evaluation. Detectron2 writes every record with the same key order, so one regular expression reads
each record into (image_id, category_id, bbox, score[, mask size, mask counts]) and numpy converts the numbers in bulk.
The fast path is taken only if every record matches (the match count equals the number of `"image_id"` keys);
anything else returns None and the caller falls back to `json.load` and the per-record checks.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

__all__ = ["RLEColumn", "ResultColumns", "read_results_columns"]

_RECORD_HEAD = (
    rb'\{"image_id": (\d+), "category_id": (\d+), "bbox": \[([^\]]*)\], "score": ([^,}\s]+)'
    rb'(?:, "segmentation": \{"size": \[(\d+), (\d+)\], "counts": '
)
_RECORD = re.compile(_RECORD_HEAD + rb'"([^"]*)"\})?\}')  # with the masks
_RECORD_NO_COUNTS = re.compile(_RECORD_HEAD + rb'"[^"]*"\})?\}')  # masks checked for layout, not kept
_BLOCK = 32 << 20  # bytes per regex pass (bounds the memory of the matched strings)


@dataclass
class RLEColumn:
    """Compressed RLE masks as raw `counts` strings and sizes; a record's dict is built only when indexed."""

    counts: List[bytes]  # JSON-escaped counts (a backslash is written as two)
    hw: np.ndarray  # [N, 2] height, width

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i: int) -> dict:
        c = self.counts[i]
        if b"\\" in c:
            c = c.replace(b"\\\\", b"\\")
        return {"size": [int(self.hw[i, 0]), int(self.hw[i, 1])], "counts": c}

    def take(self, rows: Sequence[int]) -> "RLEColumn":
        rows = np.asarray(rows, dtype=np.int64)
        return RLEColumn([self.counts[i] for i in rows.tolist()], self.hw[rows])


@dataclass
class ResultColumns:
    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: np.ndarray  # [N, 4]
    segmentation: Optional[RLEColumn]


def _split_points(data: bytes, block: int) -> List[int]:
    """Offsets at record starts (just before a `{"image_id"`), about `block` bytes apart."""
    points = [0]
    while points[-1] + block < len(data):
        nxt = data.find(b'{"image_id"', points[-1] + block)
        if nxt < 0:
            break
        points.append(nxt)
    points.append(len(data))
    return points


def read_results_columns(
    path: str | os.PathLike, progress: Optional[Callable[[int, int], None]] = None, with_masks: bool = True
) -> Optional[ResultColumns]:
    """Columns of a Detectron2-written results file, or None if its layout is not exactly that.

    with_masks=False skips keeping the masks (bbox evaluation): `segmentation` is then None."""
    with open(path, "rb") as f:
        data = f.read()
    head = data[:64].lstrip()
    if not head.startswith(b"["):
        return None
    n_records = data.count(b'"image_id"')
    n_masks = data.count(b'"segmentation"')
    if n_records == 0 or n_masks not in (0, n_records):
        return None
    points = _split_points(data, _BLOCK)
    pattern = _RECORD if with_masks else _RECORD_NO_COUNTS
    ids, cats, scores, boxes, heights, widths, counts = [], [], [], [], [], [], []
    n = 0
    for b, (lo, hi) in enumerate(zip(points[:-1], points[1:])):
        rows = pattern.findall(data, lo, hi)
        if not rows:
            return None
        n += len(rows)
        cols = list(zip(*rows))
        del rows
        try:
            ids.append(np.array(cols[0]).astype(np.int64))
            cats.append(np.array(cols[1]).astype(np.int64))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # a bad number: fewer values, checked below
                box = np.fromstring(b",".join(cols[2]).decode("ascii"), sep=",")
            score = np.array(cols[3]).astype(np.float64)
        except (ValueError, UnicodeDecodeError):
            return None
        if box.size != 4 * len(cols[0]):
            return None
        boxes.append(box.reshape(-1, 4))
        scores.append(score)
        if n_masks and with_masks:
            heights.append(np.array(cols[4]).astype(np.int64))
            widths.append(np.array(cols[5]).astype(np.int64))
            counts.extend(cols[6])
        del cols
        if progress is not None:
            progress(b + 1, len(points) - 1)
    if n != n_records:
        return None
    seg = None
    if n_masks and with_masks:
        seg = RLEColumn(counts, np.stack([np.concatenate(heights), np.concatenate(widths)], 1))
    return ResultColumns(np.concatenate(ids), np.concatenate(cats), np.concatenate(scores), np.concatenate(boxes), seg)
