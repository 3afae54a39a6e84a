"""Reports of an LVIS evaluation: the summary table, the per-class CSV, and per-class AP against training images."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from lt_detectron.utils import atomic_write
from lt_detectron.utils.io import save_figure_atomic

from .fast_lvis import LVISEvalResult
from .inputs import LVISGroundTruth

__all__ = [
    "DEMO_METRICS",
    "TABLE_METRICS",
    "detectron2_metrics",
    "format_lvis_table",
    "format_table",
    "per_class_rows",
    "write_per_class_csv",
    "plot_ap_vs_train_images",
]

DEMO_METRICS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
TABLE_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR")
CSV_FIELDS = (
    "id",
    "name",
    "frequency",
    "train_image_count",
    "train_instance_count",
    "val_instance_count",
    "ap_bbox",
    "ap_segm",
    "fixed_ap_bbox",
    "fixed_ap_segm",
)


def format_lvis_table(results: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    """Markdown table of bbox/segm AP, AP50, AP75, APr, APc, APf from Detectron2-style metrics (percent), as printed
    by `make demo` and `tools/evaluate_lvis.py`.

    Args:
        results: {task: {metric: value in percent}}, e.g. Detectron2's evaluation results; tasks other than "bbox"
            and "segm" are left out, missing metrics shown as nan.
        title: an optional line above the table.

    Returns:
        The table, one row per task.
    """
    lines = [title] if title else []
    lines.append("| task | " + " | ".join(DEMO_METRICS) + " |")
    lines.append("|---" * (len(DEMO_METRICS) + 1) + "|")
    for task in ("bbox", "segm"):
        if task in results:
            cells = [f"{results[task].get(m, float('nan')):.1f}" for m in DEMO_METRICS]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detectron2_metrics(result: LVISEvalResult) -> Dict[str, float]:
    """The metrics Detectron2's LVISEvaluator returns for one task: AP, AP50, ..., APf in percent.

    Args:
        result: one iou type's result.

    Returns:
        {metric: percent} for AP, AP50, AP75, APs, APm, APl, APr, APc, APf (-100 where lvis-api gives -1).
    """
    return {m: float(result.summary[m] * 100) for m in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")}


def format_table(results: Mapping[str, LVISEvalResult], fixed: Optional[Mapping[str, LVISEvalResult]] = None) -> str:
    """Markdown table, one row per iou type (and per Fixed AP result), values in percent with one decimal.

    Args:
        results: {iou_type: result} of standard AP.
        fixed: optional {iou_type: result} of Fixed AP, as extra rows.

    Returns:
        The table of `TABLE_METRICS` (AR at the per-image cap); "n/a" where a metric is undefined.
    """
    header = [m if m != "AR" else "AR@300" for m in TABLE_METRICS]
    lines = ["| task | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    rows = [(t, r) for t, r in results.items()] + [(f"{t} (Fixed AP)", r) for t, r in (fixed or {}).items()]
    for task, res in rows:
        cells = [_pct(res.summary[m]) for m in TABLE_METRICS]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if value is None or value < 0 or math.isnan(value) else f"{100 * value:.1f}"


def per_class_rows(
    gt: LVISGroundTruth,
    results: Mapping[str, LVISEvalResult],
    fixed: Optional[Mapping[str, LVISEvalResult]] = None,
    train_image_count: Optional[Sequence[int]] = None,
    train_instance_count: Optional[Sequence[int]] = None,
) -> List[Dict[str, object]]:
    """One row per category (sorted by id). Training counts default to the categories' stored `image_count` /
    `instance_count` (LVIS stores the training-set counts in both its train and val files). AP in percent; empty
    where undefined (no ground truth in this split).

    Args:
        gt: the evaluated ground truth.
        results: {iou_type: result} of standard AP.
        fixed: optional {iou_type: result} of Fixed AP.
        train_image_count: optional training images per category, in the order of `gt.categories`.
        train_instance_count: optional training instances per category, in the same order.

    Returns:
        One dict per category with the `CSV_FIELDS` keys.
    """
    rows = []
    val_instances = gt.instance_counts()
    for k, cat in enumerate(gt.categories):
        row: Dict[str, object] = {
            "id": cat["id"],
            "name": cat.get("name", ""),
            "frequency": cat["frequency"],
            "train_image_count": int(train_image_count[k])
            if train_image_count is not None
            else cat.get("image_count", ""),
            "train_instance_count": int(train_instance_count[k])
            if train_instance_count is not None
            else cat.get("instance_count", ""),
            "val_instance_count": int(val_instances[k]),
        }
        for prefix, res_map in (("ap", results), ("fixed_ap", fixed or {})):
            for task in ("bbox", "segm"):
                res = res_map.get(task)
                value = None if res is None else res.per_class_ap[k]
                row[f"{prefix}_{task}"] = "" if value is None or np.isnan(value) else round(100 * float(value), 4)
        rows.append(row)
    return rows


def write_per_class_csv(rows: Sequence[Mapping[str, object]], path: str) -> str:
    """Write the rows of `per_class_rows` as a CSV with the `CSV_FIELDS` columns, atomically.

    Args:
        rows: one dict per category.
        path: the CSV file.

    Returns:
        `path`.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def plot_ap_vs_train_images(rows: Sequence[Mapping[str, object]], path: str, title: str = "") -> Optional[str]:
    """Per-class AP (mask AP if present, else box AP) against training images, log x, r/c/f bands, and a trend line
    (least squares of AP on log10 of the count). Returns the path, or None if no class has both numbers.

    Args:
        rows: the rows of `per_class_rows`; classes with 0 training images are left out.
        path: the PNG file.
        title: the figure title; "" = "Per-class AP vs training images".

    Returns:
        `path`, or None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "ap_segm" if any(r.get("ap_segm") not in ("", None) for r in rows) else "ap_bbox"
    pts = [
        (float(r["train_image_count"]), float(r[key]), r["frequency"])
        for r in rows
        if r.get(key) not in ("", None) and r.get("train_image_count") not in ("", None)
    ]
    pts = [p for p in pts if p[0] > 0]
    if not pts:
        return None
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lo, hi = min(x.min(), 1.0) / 1.5, max(x.max(), 1000.0) * 1.5
    for (a, b), label, color in (((lo, 10.5), "rare", "#f4cccc"), ((10.5, 100.5), "common", "#fff2cc"),
                                 ((100.5, hi), "frequent", "#d9ead3")):  # fmt: skip
        ax.axvspan(a, b, color=color, alpha=0.6, label=label, zorder=0)
    colors = {"r": "#cc0000", "c": "#b58900", "f": "#38761d"}
    ax.scatter(x, y, s=12, c=[colors.get(p[2], "k") for p in pts], zorder=2)
    if len(np.unique(x)) > 1:
        slope, intercept = np.polyfit(np.log10(x), y, 1)
        xs = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
        ax.plot(xs, intercept + slope * np.log10(xs), "k--", lw=1.5, zorder=3,
                label=f"trend: {slope:+.1f} AP per 10x images")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("training images of the class (log)")
    ax.set_ylabel(f"per-class {'mask' if key == 'ap_segm' else 'box'} AP")
    ax.set_title(title or "Per-class AP vs training images")
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


def write_reports(
    output_dir: str,
    gt: LVISGroundTruth,
    results: Mapping[str, LVISEvalResult],
    fixed: Optional[Mapping[str, LVISEvalResult]] = None,
    train_image_count: Optional[Sequence[int]] = None,
    train_instance_count: Optional[Sequence[int]] = None,
    prefix: str = "lvis",
) -> Dict[str, str]:
    """Write `<prefix>_per_class.csv`, `<prefix>_ap_vs_train_images.png` and `<prefix>_summary.md` into output_dir.

    Args:
        output_dir: the folder (created if needed).
        gt: the evaluated ground truth.
        results: {iou_type: result} of standard AP.
        fixed: optional {iou_type: result} of Fixed AP.
        train_image_count: optional training images per category (`per_class_rows`).
        train_instance_count: optional training instances per category.
        prefix: the file name prefix.

    Returns:
        The paths written: "csv", "table" and, when there was a point to plot, "png".
    """
    os.makedirs(output_dir, exist_ok=True)
    rows = per_class_rows(gt, results, fixed, train_image_count, train_instance_count)
    paths = {"csv": write_per_class_csv(rows, os.path.join(output_dir, f"{prefix}_per_class.csv"))}
    png = plot_ap_vs_train_images(rows, os.path.join(output_dir, f"{prefix}_ap_vs_train_images.png"))
    if png:
        paths["png"] = png
    table = format_table(results, fixed)
    md = os.path.join(output_dir, f"{prefix}_summary.md")
    paths["table"] = atomic_write(md, lambda f: f.write((table + "\n").encode()))
    return paths
