"""Masks for the LVIS evaluator: every compressed RLE string decoded once (the C extension `_rle`, pycocotools'
arithmetic), then areas, boxes and IoUs from the runs.

Polygons and uncompressed RLE (ground truth, or results not written by Detectron2) become compressed RLE first,
with pycocotools as lvis-api does (`LVIS.ann_to_rle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from ._native import _rle
from .fast_json import RLEColumn
from .inputs import LVISGroundTruth, LVISInputError

__all__ = ["DecodedMasks", "detection_masks", "ground_truth_masks", "mask_iou_entries"]


@dataclass
class DecodedMasks:
    """n masks as runs (pycocotools' counts), with pycocotools' area and box (x, y, w, h) of each."""

    runs: bytes  # uint32 runs of all masks
    run_start: bytes  # int64 [n + 1] offsets into runs
    area: np.ndarray  # [n] float64
    bbox: np.ndarray  # [n, 4] float64

    def iou(self, rows: np.ndarray, other: "DecodedMasks", other_rows: np.ndarray) -> np.ndarray:
        """IoU of mask rows[e] with other's mask other_rows[e], for each entry e (pycocotools' rleIou, iscrowd 0)."""
        rows, other_rows = (np.ascontiguousarray(r, dtype=np.int64) for r in (rows, other_rows))
        return np.frombuffer(_rle.iou(self.runs, self.run_start, other.runs, other.run_start, rows, other_rows))


def _decode(counts: Sequence[bytes] | None, hw: np.ndarray, column: Optional[RLEColumn] = None):
    """Decode strings (or an RLEColumn's strings in its file's bytes): the masks and the rows that did not decode."""
    if column is not None and column.counts is None:  # the strings in the results file's bytes, JSON-escaped
        buffer, starts, ends, escaped = column.source, column.starts, column.ends, True
    else:
        counts = column.counts if column is not None else counts
        lengths = np.fromiter((len(c) for c in counts), dtype=np.int64, count=len(counts))
        ends = np.cumsum(lengths)
        buffer, starts, escaped = b"".join(counts), ends - lengths, False
    runs, run_start, area, bbox, bad = _rle.decode(
        buffer, np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64),
        np.ascontiguousarray(hw, dtype=np.int64), escaped,
    )  # fmt: skip
    masks = DecodedMasks(runs, run_start, np.frombuffer(area), np.frombuffer(bbox).reshape(-1, 4))
    return masks, np.flatnonzero(np.frombuffer(bad, dtype=np.uint8))


def _to_rle(segm, h: int, w: int):
    """lvis-api's `LVIS.ann_to_rle`: polygons and uncompressed RLE to compressed RLE (pycocotools)."""
    import pycocotools.mask as mask_utils

    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, h, w)
    return segm


def _counts_bytes(counts) -> bytes:
    return counts.encode() if isinstance(counts, str) else counts


def _result_error(index: int, problem: str) -> LVISInputError:
    return LVISInputError(
        f"results: record [{index}] field 'segmentation' {problem}; write masks with pycocotools.mask.encode at the "
        f"image's size (as Detectron2's instances_to_coco_json does)."
    )


def detection_masks(segmentation, rows: slice, hw: np.ndarray, index: np.ndarray) -> DecodedMasks:
    """The masks of detections `rows` (an RLEColumn, or json.load's per-record objects); LVISInputError naming the
    first record whose mask does not decode to its image's size.

    Args:
        segmentation: the detections' `segmentation` column.
        rows: the rows to decode.
        hw: [n, 2] the images' heights and widths of those rows.
        index: [n] the rows' record numbers in the results file (for the error message).
    """
    if isinstance(segmentation, RLEColumn):
        masks, bad = _decode(None, hw, column=segmentation.view(np.arange(rows.start, rows.stop)))
    else:
        counts = []
        for j, segm in enumerate(segmentation[rows]):
            h, w = int(hw[j, 0]), int(hw[j, 1])
            try:
                c = _counts_bytes(_to_rle(segm, h, w)["counts"])
                if not isinstance(c, bytes):
                    raise TypeError(f"counts is a {type(c).__name__}")
                counts.append(c)
            except Exception as err:
                raise _result_error(int(index[j]), f"does not decode ({err})") from None
        masks, bad = _decode(counts, hw)
    if len(bad):
        j = int(bad[0])
        h, w = hw[j].tolist()
        raise _result_error(int(index[j]), f"does not decode to a mask of the image's {h}x{w} pixels")
    return masks


def ground_truth_masks(anns: List[dict], gt: LVISGroundTruth, img_index: np.ndarray) -> DecodedMasks:
    """lvis-api's `ann_to_rle` of each annotation, decoded; polygons rasterised image by image (one pycocotools
    call each). An annotation whose first polygon has more than 4 numbers is rasterised polygon by polygon and
    merged, as `frPyObjects` + `merge` do for it alone; any other (uncompressed RLE, RLE, short first polygon)
    goes alone."""
    import pycocotools.mask as mask_utils

    hw = gt.img_hw[img_index]
    counts: List[Optional[bytes]] = [None] * len(anns)
    batch: dict = {}
    for j, ann in enumerate(anns):
        segm = ann.get("segmentation")
        if segm is None:
            raise LVISInputError(
                f"ground truth {gt.source}: annotation id {ann['id']} has no 'segmentation'; segm evaluation needs "
                f"masks (or evaluate bbox only)."
            )
        if isinstance(segm, list) and segm and isinstance(segm[0], list) and len(segm[0]) > 4:
            batch.setdefault(int(img_index[j]), []).append(j)
        else:
            counts[j] = _counts_bytes(_to_rle(segm, int(hw[j, 0]), int(hw[j, 1]))["counts"])
    for ii, js in batch.items():
        h, w = int(gt.img_hw[ii, 0]), int(gt.img_hw[ii, 1])
        rles = mask_utils.frPyObjects([p for j in js for p in anns[j]["segmentation"]], h, w)
        k = 0
        for j in js:
            n = len(anns[j]["segmentation"])
            counts[j] = rles[k]["counts"] if n == 1 else mask_utils.merge(rles[k : k + n])["counts"]
            k += n
    masks, bad = _decode(counts, hw)  # type: ignore[arg-type]
    if len(bad):
        j = int(bad[0])
        raise LVISInputError(
            f"ground truth {gt.source}: annotation id {anns[j]['id']} has a 'segmentation' that is not a mask of "
            f"its image's {hw[j, 0]}x{hw[j, 1]} pixels; write polygons, or RLE from pycocotools.mask.encode."
        )
    return masks


def mask_iou_entries(
    d: DecodedMasks, d_rows: np.ndarray, g: DecodedMasks, e_det: np.ndarray, e_gt: np.ndarray, lowest: float
) -> np.ndarray:  # fmt: skip
    """Mask IoU of entries (detection d_rows[e_det[e]] against ground truth e_gt[e]); exact where it can reach
    `lowest` (the lowest IoU threshold), else 0.

    An entry whose upper bound min(area_d, area_g, box intersection) / max(area_d, area_g) is below `lowest` cannot
    match, so its masks are not merged (rounding is monotone: the computed IoU is at most the computed bound).
    """
    out = np.zeros(len(e_det))
    if len(e_det) == 0:
        return out
    rows = d_rows[e_det]
    db, gb = d.bbox[rows], g.bbox[e_gt]
    w = np.minimum(db[:, 0] + db[:, 2], gb[:, 0] + gb[:, 2]) - np.maximum(db[:, 0], gb[:, 0])
    h = np.minimum(db[:, 1] + db[:, 3], gb[:, 1] + gb[:, 3]) - np.maximum(db[:, 1], gb[:, 1])
    a_d, a_g = d.area[rows], g.area[e_gt]
    bound = np.minimum(np.minimum(a_d, a_g), np.clip(w, 0, None) * np.clip(h, 0, None)) / np.maximum(a_d, a_g)
    live = np.flatnonzero(bound >= lowest)
    out[live] = d.iou(rows[live], g, e_gt[live])
    return out
