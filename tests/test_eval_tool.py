"""tools/evaluate_lvis.py: re-evaluates a saved results file, prints the table, writes CSV / PNG / table, compares
with lvis-api, and names bad input."""

from __future__ import annotations

import csv
import json
import re

import pytest
from _scripts import load_script

from lt_detectron.evaluation.synthetic import make_lvis_gt, make_lvis_results


def _tool():
    return load_script("tools/evaluate_lvis.py", "lt_tools_evaluate_lvis")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_tool")
    gt = make_lvis_gt(20, 15, seed=5)
    res = make_lvis_results(gt, seed=5, max_dets_per_image=60)
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "lvis_instances_results.json").write_text(json.dumps(res))
    return root, gt


def test_compare_prints_tables_and_a_tiny_difference(files, capsys):
    root, gt = files
    out = root / "out"
    rc = _tool().main(["--gt", str(root / "gt.json"), "--results", str(root / "lvis_instances_results.json"),
                       "--compare", "--workers", "2", "--output", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert text.count("| task | AP | AP50 | AP75 | APr | APc | APf |") == 2  # fast, then lvis-api
    fast_table = text.split("fast evaluator:")[1].split("\n\n")[0]
    ref_table = text.split("lvis-api: AP at")[1].split("\n\n")[0]
    assert fast_table.splitlines()[1:] == ref_table.splitlines()[1:]
    worst = float(re.search(r"largest difference overall: (\S+)", text).group(1))
    assert worst <= 1e-9
    with open(out / "lvis_per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(gt["categories"]) and any(r["ap_bbox"] for r in rows) and any(r["ap_segm"] for r in rows)
    assert (out / "lvis_ap_vs_train_images.png").stat().st_size > 1000
    assert "| bbox |" in (out / "lvis_summary.md").read_text()


def test_fixed_ap_bbox_only(files, capsys):
    root, _ = files
    args = ["--gt", str(root / "gt.json"), "--results", str(root / "lvis_instances_results.json")]
    args += ["--iou-type", "bbox", "--fixed-ap", "--workers", "1", "--output", str(root / "fixed")]
    rc = _tool().main(args)
    text = capsys.readouterr().out
    assert rc == 0 and "Fixed AP" in text and "| segm |" not in text
    with open(root / "fixed" / "lvis_per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r["fixed_ap_bbox"] for r in rows) and not any(r["ap_bbox"] for r in rows)


def test_bad_input_exits_2_naming_the_record(files, tmp_path, capsys):
    root, _ = files
    res = json.loads((root / "lvis_instances_results.json").read_text())
    res[3]["category_id"] = 999
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(res))
    rc = _tool().main(["--gt", str(root / "gt.json"), "--results", str(bad), "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "record [3] field 'category_id'" in err
