"""Read a results file written by Detectron2 (`json.dumps` of `instances_to_coco_json` records) straight into columns.

`json.load` builds a dict, a list and five number objects per detection: on 1.4 M detections that alone costs more
than the whole evaluation. Detectron2 writes every record with the same key order, so one regular expression reads
each record into (image_id, category_id[, bbox], score[, mask size]) and numpy converts the numbers in bulk.
The fast path is taken only if every record matches (the match count equals the number of `"image_id"` keys);
anything else returns None and the caller falls back to `json.load` and the per-record checks.

Mask strings are not copied out of the file: the regular expression checks their layout, one pass over the bytes
finds where each record's mask ends, and `RLEColumn.take` copies the strings of the rows asked for only (the LVIS
protocol evaluates about a fifth of the detections: the per-image top 300 whose class is annotated or a negative
in the image).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

from .gc_pause import gc_paused

__all__ = ["RLEColumn", "ResultColumns", "read_results_columns"]


def _record_pattern(with_boxes: bool, with_masks: bool) -> "re.Pattern[bytes]":
    box = rb"([^\]]*)" if with_boxes else rb"[^\]]*"
    size = rb"(\d+, \d+)" if with_masks else rb"\d+, \d+"
    return re.compile(
        rb'\{"image_id": (\d+), "category_id": (\d+), "bbox": \[' + box + rb'\], "score": ([^,}\s]+)'
        rb'(?:, "segmentation": \{"size": \[' + size + rb'\], "counts": "[^"]*"\})?\}'
    )


_BLOCK = 32 << 20  # bytes per regex pass (bounds the memory of the matched strings)
_QUOTE, _CLOSE = ord('"'), ord("}")


@dataclass
class RLEColumn:
    """Compressed RLE masks: sizes, and the `counts` strings either copied (`counts`) or left in the file's bytes
    (`source`, with `ends` the offset of each string's closing quote). A record's dict is built only when asked for."""

    hw: np.ndarray  # [N, 2] height, width
    counts: Optional[List[bytes]] = None  # unescaped counts strings
    source: Optional[bytes] = None
    ends: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.hw)

    def _copy(self, rows: Sequence[int]) -> List[bytes]:
        if self.counts is not None:
            return [self.counts[i] for i in rows]
        data = self.source
        assert data is not None and self.ends is not None
        out = []
        for e in self.ends[np.asarray(rows, dtype=np.int64)].tolist():
            c = data[data.rfind(b'"', 0, e) + 1 : e]
            out.append(c.replace(b"\\\\", b"\\") if b"\\" in c else c)  # JSON escapes a backslash as two
        return out

    def __getitem__(self, i: int) -> dict:
        return {"size": [int(self.hw[i, 0]), int(self.hw[i, 1])], "counts": self._copy([i])[0]}

    def dicts(self, lo: int, hi: int) -> List[dict]:
        """The RLE dicts of rows [lo, hi).

        Args:
            lo: first row.
            hi: one past the last row.

        Returns:
            One {"size": [h, w], "counts": bytes} dict per row.
        """
        counts = self._copy(range(lo, hi))
        return [{"size": hw, "counts": c} for hw, c in zip(self.hw[lo:hi].tolist(), counts)]

    def view(self, rows: Sequence[int]) -> "RLEColumn":
        """The given rows as a new column that still reads the strings from the same bytes (nothing copied).

        Args:
            rows: row indices, in the order wanted.

        Returns:
            A column of len(rows) masks (a `take` if this column holds copied strings).
        """
        if self.counts is not None:
            return self.take(rows)
        rows = np.asarray(rows, dtype=np.int64)
        assert self.ends is not None
        return RLEColumn(self.hw[rows], source=self.source, ends=self.ends[rows])

    def take(self, rows: Sequence[int]) -> "RLEColumn":
        """The given rows as a new column with its `counts` strings copied (no reference to the file's bytes).

        Args:
            rows: row indices, in the order wanted.

        Returns:
            A column of len(rows) masks.
        """
        rows = np.asarray(rows, dtype=np.int64)
        return RLEColumn(self.hw[rows], counts=self._copy(rows.tolist()))


@dataclass
class ResultColumns:
    """The N records of a results file as columns, in file order.

    Attributes:
        image_id: [N] int64 image ids.
        category_id: [N] int64 category ids.
        score: [N] float64 scores.
        bbox: [N, 4] float64 boxes (x, y, w, h); None if not asked for.
        segmentation: the N masks; None if not asked for or the file has none.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: Optional[np.ndarray]  # [N, 4]; None if not asked for
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


def _numbers(strings: Sequence[bytes], dtype: type, per_row: int) -> Optional[np.ndarray]:
    """Parse `per_row` comma-separated numbers from each string; None if any does not parse."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a bad number: fewer values, checked below
        try:
            out = np.fromstring(b",".join(strings).decode("ascii"), dtype=dtype, sep=",")
        except (ValueError, UnicodeDecodeError):
            return None
    if out.size != per_row * len(strings):
        return None
    return out.reshape(-1, per_row) if per_row > 1 else out


def _mask_ends(data: bytes, points: Sequence[int], n: int) -> Optional[np.ndarray]:
    """Offset of the closing quote of each record's `counts`: every record that matched ends in `"}}`, and no `}`
    occurs elsewhere in a file of matched records (RLE strings use the characters 0 to o). None if that fails."""
    arr = np.frombuffer(data, dtype=np.uint8)
    closes = [np.flatnonzero(arr[lo:hi] == _CLOSE) + lo for lo, hi in zip(points[:-1], points[1:])]
    pos = np.concatenate(closes) if closes else np.zeros(0, dtype=np.int64)
    if len(pos) != 2 * n:
        return None
    ends = pos[0::2] - 1
    if not ((pos[1::2] == pos[0::2] + 1).all() and (arr[ends] == _QUOTE).all()):
        return None
    return ends


@gc_paused
def read_results_columns(
    path: str | os.PathLike,
    progress: Optional[Callable[[int, int], None]] = None,
    with_masks: bool = True,
    with_boxes: bool = True,
) -> Optional[ResultColumns]:
    """Columns of a Detectron2-written results file, or None if its layout is not exactly that.

    with_masks=False skips keeping the masks (bbox evaluation): `segmentation` is then None; with_boxes=False skips
    converting the boxes (segm evaluation): `bbox` is then None. The layout of both is checked either way.

    Args:
        path: the results json file.
        progress: optional callback `progress(blocks_done, blocks_total)`, called after each block of the file.
        with_masks: keep the masks.
        with_boxes: convert the boxes.

    Returns:
        The columns, or None when the file is not exactly in Detectron2's layout (the caller falls back to
        `json.load`).
    """
    with open(path, "rb") as f:
        data = f.read()
    head = data[:64].lstrip()
    if not head.startswith(b"["):
        return None
    n_records = data.count(b'"image_id"')
    n_masks = data.count(b'"segmentation"')
    if n_records == 0 or n_masks not in (0, n_records):
        return None
    # Only records in the list: it opens and closes on one, and records follow each other directly. An entry that is
    # not a record (a number, string, list or null between two records) has no "image_id" for the regular expression
    # to miss, so without this check it would be skipped; json.load and the per-record checks then name it.
    if not (head.startswith(b'[{"image_id"') and data[-64:].rstrip().endswith(b"}]")):
        return None
    if data.count(b'}, {"image_id"') != n_records - 1:
        return None
    with_masks = with_masks and n_masks > 0
    points = _split_points(data, _BLOCK)
    pattern = _record_pattern(with_boxes, with_masks)
    ids, cats, scores, boxes, sizes = [], [], [], [], []
    n = 0
    for b, (lo, hi) in enumerate(zip(points[:-1], points[1:])):
        rows = pattern.findall(data, lo, hi)
        if not rows:
            return None
        n += len(rows)
        cols = list(zip(*rows))
        del rows
        parsed = [_numbers(cols[0], np.int64, 1), _numbers(cols[1], np.int64, 1)]
        if with_boxes:
            parsed.append(_numbers(cols[2], np.float64, 4))
        parsed.append(_numbers(cols[len(parsed)], np.float64, 1))
        if with_masks:
            parsed.append(_numbers(cols[len(parsed)], np.int64, 2))
        del cols
        if any(p is None for p in parsed):
            return None
        ids.append(parsed.pop(0))
        cats.append(parsed.pop(0))
        if with_boxes:
            boxes.append(parsed.pop(0))
        scores.append(parsed.pop(0))
        if with_masks:
            sizes.append(parsed.pop(0))
        if progress is not None:
            progress(b + 1, len(points) - 1)
    if n != n_records:
        return None
    seg = None
    if with_masks:
        ends = _mask_ends(data, points, n)
        if ends is None:
            return None
        seg = RLEColumn(np.concatenate(sizes), source=data, ends=ends)
    bbox = np.concatenate(boxes) if with_boxes else None
    return ResultColumns(np.concatenate(ids), np.concatenate(cats), np.concatenate(scores), bbox, seg)
