"""Read a results file written by Detectron2 (`json.dumps` of `instances_to_coco_json` records) straight into columns.

`json.load` builds a dict, a list and five number objects per detection: on 1.4 M detections that alone costs more
than the whole evaluation. The C extension `_records` reads the records in one pass into column bytes, with exactly
`json.load`'s numbers (see its source). Records with other keys, another key order or non-plain numbers return None
and the caller falls back to `json.load` and the per-record checks.

Mask strings are not copied out of the file: the reader records where each record's counts string starts and ends,
and `RLEColumn.view` / `RLEColumn.dicts` read the strings of the rows asked for only (the LVIS protocol evaluates
about a fifth of the detections: the per-image top 300 whose class is annotated or a negative in the image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

from ._native import _records
from .gc_pause import gc_paused

__all__ = ["RLEColumn", "ResultColumns", "read_results_columns"]


@dataclass
class RLEColumn:
    """Compressed RLE masks: sizes, and the `counts` strings either copied (`counts`) or left in the file's bytes
    (`source`, each string at [starts, ends) in it). A record's dict is built only when asked for."""

    hw: np.ndarray  # [N, 2] height, width
    counts: Optional[List[bytes]] = None  # unescaped counts strings
    source: Optional[bytes] = None
    starts: Optional[np.ndarray] = None
    ends: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.hw)

    def _copy(self, rows: Sequence[int]) -> List[bytes]:
        if self.counts is not None:
            return [self.counts[i] for i in rows]
        data = self.source
        assert data is not None and self.starts is not None and self.ends is not None
        rows = np.asarray(rows, dtype=np.int64)
        out = [data[s:e] for s, e in zip(self.starts[rows].tolist(), self.ends[rows].tolist())]
        if any(b"\\" in c for c in out):
            out = [c.replace(b"\\\\", b"\\") for c in out]  # JSON escapes a backslash as two
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
        assert self.starts is not None and self.ends is not None
        return RLEColumn(self.hw[rows], source=self.source, starts=self.starts[rows], ends=self.ends[rows])

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


_BLOCK = 32 << 20  # bytes per read of a file whose masks are not kept
_SPACE = b" \t\r\n"


def _columns(out: Optional[tuple]) -> Optional[tuple]:
    """The C reader's column bytes as arrays: (image_id, category_id, score, bbox or None, hw or None, counts starts
    or None, counts ends or None); None stays None."""
    if out is None:
        return None
    n, *cols = out
    dtypes = (np.int64, np.int64, np.float64, np.float64, np.int64, np.int64, np.int64)
    arrays = [None if c is None else np.frombuffer(c, dtype=t) for c, t in zip(cols, dtypes)]
    for k, width in ((3, 4), (4, 2)):
        if arrays[k] is not None:
            arrays[k] = arrays[k].reshape(n, width)
    return tuple(arrays)


@gc_paused
def read_results_columns(
    path: str | os.PathLike,
    progress: Optional[Callable[[int, int], None]] = None,
    with_masks: bool = True,
    with_boxes: bool = True,
) -> Optional[ResultColumns]:
    """Columns of a Detectron2-written results file, or None if its layout is not exactly that.

    with_masks=False skips keeping the masks (bbox evaluation; the file is then read a block at a time, nothing of
    it kept): `segmentation` is then None; with_boxes=False skips converting the boxes (segm evaluation): `bbox` is
    then None. The layout of both is checked either way (the numbers not asked for are not converted). The reading
    runs without the GIL.

    Args:
        path: the results json file.
        progress: optional callback `progress(done, total)`, called once when the file is read.
        with_masks: keep the masks.
        with_boxes: convert the boxes.

    Returns:
        The columns, or None when the file is not exactly in Detectron2's layout (the caller falls back to
        `json.load`).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(1 << 16).lstrip(_SPACE)
        if not head.startswith(b"[{"):
            return None
        # a record with masks has "segmentation" before its first `}` (its mask's); one without ends there
        first_close = head.find(b"}")
        has_masks = first_close > 0 and b'"segmentation"' in head[:first_close]
        record_bytes = head.find(b'"image_id"', 12) - 2  # the first record and its separator: room to reserve
        rows = size // record_bytes + 1024 if record_bytes > 0 else 0
        masks = (1 if with_masks else 2) if has_masks else 0
        data = None
        if masks == 1:  # the masks are read later from the file's bytes (RLEColumn): keep them
            f.seek(0)
            data = f.read()
            start, end = 0, len(data)  # the list's brackets, past any whitespace (strip() would copy the file)
            while start < end and data[start] in _SPACE:
                start += 1
            while end > start and data[end - 1] in _SPACE:
                end -= 1
            if data[end - 1 : end] != b"]":
                return None
            body = memoryview(data)[start + 1 : end - 1]
            cols = _columns(_records.parse_records(body, 1, with_boxes, start + 1, rows))
        else:
            f.seek(0)
            cols = _columns(_records.parse_file(f.fileno(), masks, with_boxes, _BLOCK, rows))
    if cols is None:
        return None
    if progress is not None:
        progress(1, 1)
    ids, cats, scores, bbox, hw, starts, ends = cols
    seg = RLEColumn(hw, source=data, starts=starts, ends=ends) if masks == 1 else None
    return ResultColumns(ids, cats, scores, bbox, seg)
