"""Read a results file written by Detectron2 (`json.dumps` of `instances_to_coco_json` records) straight into columns.

`json.load` builds a dict, a list and five number objects per detection: on 1.4 M detections that alone costs more
than the whole evaluation. Detectron2 writes every record with the same keys in the same order, so the file is
turned into CSV text by whole-buffer byte operations (a regular expression cuts out the masks' counts strings, each
key becomes one marker byte, then `bytes.translate`), and numpy's C text reader converts the numbers. The sequence
of marker bytes and commas must repeat exactly once per record (keys in order, no other key or entry); anything else
returns None and the caller falls back to `json.load` and the per-record checks.

Mask strings are not copied out of the file: one pass over the bytes finds where each record's mask ends, and
`RLEColumn.view` / `RLEColumn.dicts` read the strings of the rows asked for only (the LVIS protocol evaluates about a
fifth of the detections: the per-image top 300 whose class is annotated or a negative in the image).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .gc_pause import gc_paused

__all__ = ["RLEColumn", "ResultColumns", "read_results_columns"]


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


_START = b'{"image_id": '
_NEXT = rb'(?:, \{"image_id": )?'  # the next record's start, if any: the record's end becomes one line end
_CATEGORY, _BBOX, _SCORE = (b', "category_id": ', b"\x02"), (b', "bbox": [', b"\x03"), (b'], "score": ', b"\x04")
# Per layout: the regular expression that cuts out the masks (and ends the line), Detectron2's other keys in its
# order (json.dumps of instances_to_coco_json records) each replaced by one marker byte, and the structure bytes
# (markers and commas) of one record. "masks" keeps the masks' sizes; "masks dropped" (bbox evaluation) cuts the
# whole segmentation out; "boxes" is a file without masks.
_LAYOUTS = {
    "masks": (re.compile(rb'\], "counts": "[^"]*"\}\}' + _NEXT),
              (_CATEGORY, _BBOX, _SCORE, (b', "segmentation": {"size": [', b"\x05")), b"\x02\x03,,,\x04\x05,\n"),
    "masks dropped": (re.compile(rb', "segmentation": \{"size": \[\d+, \d+\], "counts": "[^"]*"\}\}' + _NEXT),
                      (_CATEGORY, _BBOX, _SCORE), b"\x02\x03,,,\x04\n"),
    "boxes": (None, ((b'}, {"image_id": ', b"\n"), _CATEGORY, _BBOX, _SCORE), b"\x02\x03,,,\x04\n"),
}  # fmt: skip
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"\n\x02\x03\x04\x05,}")))
_TO_CSV = bytes.maketrans(b"\x02\x03\x04\x05", b",,,,")


def _block_columns(block: bytes | memoryview, layout: str, want_boxes: bool) -> Optional[np.ndarray]:
    """The numbers of the records in `block` (records without their leading `{"image_id": `, the last one followed
    by `, {"image_id": ` if the file has no masks), as a structured array; None if any record is not in
    Detectron2's layout. The masks' counts strings are cut out first; the keys then become marker bytes whose
    sequence, with the commas, must repeat exactly once per record (keys in order, no other key, no other entry),
    and numpy's text reader converts the numbers asked for (integers must be written as integers)."""
    cut, tokens, record = _LAYOUTS[layout]
    if cut is not None:
        block = cut.sub(b"\n", block)
    for token, marker in tokens:
        block = block.replace(token, marker)
    structure = block.translate(None, _NOT_STRUCTURE)
    m = len(structure) // len(record)
    if m == 0 or structure != record * m:
        return None
    # columns of a record: image_id, category_id, x, y, w, h, score[, height, width]
    fields = [("image_id", np.int64, 0), ("category_id", np.int64, 1), ("score", np.float64, 6)]
    if want_boxes:
        fields += [(f"bbox{j}", np.float64, 2 + j) for j in range(4)]
    if layout == "masks":
        fields += [("height", np.int64, 7), ("width", np.int64, 8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy reads "2.0" as the integer 2 with a DeprecationWarning: decline
        try:
            rows = np.loadtxt(
                io.BytesIO(block.translate(_TO_CSV, b" }")), dtype=np.dtype([f[:2] for f in fields]), delimiter=",",
                ndmin=1, encoding="latin1", comments=None, usecols=[f[2] for f in fields],
            )  # fmt: skip
        except (ValueError, Warning):
            return None
    return rows if len(rows) == m else None


def _whole_blocks(data: bytes) -> Tuple[Iterator[Optional[memoryview]], List[int]]:
    """The records of a whole file's bytes in pieces of about _BLOCK bytes (views, each from a record's start to a
    record's end), and the pieces' start offsets plus the end; None as the only piece if the list does not open
    and close on a record."""
    start = len(data) - len(data.lstrip())
    end = len(data.rstrip())
    if not data.startswith(b'[{"image_id"', start) or data[end - 2 : end] != b"}]":
        return iter([None]), []
    points = [start + 1]  # record starts about _BLOCK bytes apart ('{"image_id"' cannot occur in a mask string)
    while points[-1] + _BLOCK < end - 1:
        nxt = data.find(b'{"image_id"', points[-1] + _BLOCK, end)
        if nxt < 0:
            break
        points.append(nxt)
    points.append(end - 1)
    view = memoryview(data)

    def pieces() -> Iterator[Optional[memoryview]]:
        for lo, hi in zip(points[:-1], points[1:]):
            while hi > lo and data[hi - 1] in b", ":  # the separator before the next piece
                hi -= 1
            yield view[lo:hi]

    return pieces(), points


def _streamed_blocks(f: BinaryIO) -> Iterator[Optional[memoryview]]:
    """The same pieces as `_whole_blocks`, read from an open file about _BLOCK bytes at a time into one reused
    buffer (fresh buffers would cost a page fault per page, block after block). A piece is valid until the next."""
    space = b" \t\r\n"
    buf = bytearray(2 * _BLOCK)
    view = memoryview(buf)
    hi = f.readinto(view[:_BLOCK])
    lo = 0
    while lo < hi and buf[lo] in space:
        lo += 1
    if not buf.startswith(b'[{"image_id"', lo, hi):
        yield None
        return
    lo += 1
    while True:
        if lo > 0:  # the incomplete record to the front
            buf[: hi - lo] = buf[lo:hi]
            hi, lo = hi - lo, 0
        if hi + _BLOCK > len(buf):  # a record longer than a block: a bigger buffer (the old one may be in use)
            bigger = bytearray(2 * len(buf))
            bigger[:hi] = buf[:hi]
            buf, view = bigger, memoryview(bigger)
        got = f.readinto(view[hi : hi + _BLOCK])
        hi += got
        if not got:
            end = hi
            while end > 0 and buf[end - 1] in space:
                end -= 1
            yield view[: end - 1] if end >= 2 and buf[end - 2 : end] == b"}]" else None
            return
        cut = buf.rfind(b'{"image_id"', 1, hi)  # the last record start: the records before it are complete
        if cut > 0:
            end = cut
            while end > 0 and buf[end - 1] in b", ":
                end -= 1
            yield view[:end]
            lo = cut


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
    converting the boxes (segm evaluation): `bbox` is then None. The layout of both is checked either way (the
    numbers not asked for are not converted).

    Args:
        path: the results json file.
        progress: optional callback `progress(blocks_done, blocks_total)`, called after each block of the file.
        with_masks: keep the masks.
        with_boxes: convert the boxes.

    Returns:
        The columns, or None when the file is not exactly in Detectron2's layout (the caller falls back to
        `json.load`).
    """
    size = os.path.getsize(path)
    total = max(-(-size // _BLOCK), 1)
    with open(path, "rb") as f:
        if with_masks:  # the masks are read later from the file's bytes (RLEColumn): keep them
            data: Optional[bytes] = f.read()
            blocks, points = _whole_blocks(data)
        else:  # nothing of the bytes is kept: read block by block (the peak holds a block, not the file)
            data, points = None, []
            blocks = _streamed_blocks(f)
        parts, layout = [], ""
        for b, block in enumerate(blocks):
            head = None if block is None else bytes(block[: 1 << 16])  # a memoryview has no find
            if head is None or not head.startswith(_START):
                return None
            if not layout:  # the first record tells whether the file has masks
                first_end = head.find(b'}, {"image_id"')
                if first_end < 0:
                    head = bytes(block)
                has_masks = head.find(b'"segmentation"', 0, first_end if first_end >= 0 else len(head)) >= 0
                with_masks = with_masks and has_masks
                layout = "boxes" if not has_masks else "masks" if with_masks else "masks dropped"
            piece = block[len(_START) :]  # a view: the first operation on it makes the only copy
            if layout == "boxes":  # every record then ends in the same bytes
                piece = b"".join((piece, b", ", _START))
            rows = _block_columns(piece, layout, with_boxes)
            if rows is None:
                return None
            parts.append(rows)
            if progress is not None:
                progress(b + 1, max(total, b + 1))
    if not parts:
        return None
    cols = np.concatenate(parts)
    del parts
    n = len(cols)
    seg = None
    if with_masks:
        assert data is not None
        ends = _mask_ends(data, points, n)
        if ends is None:
            return None
        seg = RLEColumn(np.stack([cols["height"], cols["width"]], axis=1), source=data, ends=ends)
    bbox = np.stack([cols[f"bbox{j}"] for j in range(4)], axis=1) if with_boxes else None
    ids, cats, scores = (np.ascontiguousarray(cols[k]) for k in ("image_id", "category_id", "score"))
    return ResultColumns(ids, cats, scores, bbox, seg)
