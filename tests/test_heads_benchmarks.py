"""The lt_shapes head sweep's bookkeeping: finished-run detection and the mean ± spread / paired-delta table."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location(
        "lt_shapes_heads", os.path.join(REPO, "benchmarks", "lt_shapes_heads.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(ap_r: float, max_iter: int = 1000) -> dict:
    metrics = {"AP": 10.0 + ap_r, "APr": ap_r, "APc": 5.0, "APf": 20.0}
    return {"max_iter": max_iter, "results": {"bbox": dict(metrics), "segm": dict(metrics, APr=ap_r / 2)}}


def test_finished_runs_are_skipped_only_for_the_same_schedule(sweep, tmp_path):
    (tmp_path / sweep.RESULTS_FILE).write_text(json.dumps(_summary(1.0, max_iter=2)))
    assert sweep.load_results(str(tmp_path), 2)["max_iter"] == 2
    assert sweep.load_results(str(tmp_path), 1000) is None  # a smoke run does not count as the full run
    assert sweep.load_results(str(tmp_path / "missing"), 2) is None
    assert sweep.scheduled_iterations("lda", None) == sweep.scheduled_iterations("baseline", None) > 2
    # The post-hoc head evaluates the baseline's weights, so it shares the baseline's config and schedule.
    assert sweep.config_of("pc_softmax") == sweep.config_of("baseline")


def test_summary_reports_mean_spread_and_paired_apr_gain(sweep):
    runs = {
        "baseline": {0: _summary(2.0), 1: _summary(4.0)},
        "lda": {0: _summary(5.0), 1: _summary(9.0)},
    }
    markdown, table = sweep.summarise(runs, [0, 1], "1000 iterations")
    baseline_row = next(line for line in markdown.splitlines() if line.startswith("| baseline"))
    lda_row = next(line for line in markdown.splitlines() if line.startswith("| lda"))
    assert "3.0 ± 1.4" in baseline_row  # bbox APr mean and sample std of (2, 4)
    cells = [c.strip() for c in lda_row.strip("|").split("|")]
    assert cells[-2] == "4.0 ± 1.4"  # bbox APr - baseline, paired by seed: (3, 5)
    assert cells[-1] == "2.0 ± 0.7"  # segm
    assert len(table.strip().splitlines()) == 1 + 2 * 2 * 2  # header + head x seed x task


def test_unknown_head_fails_before_training(sweep):
    with pytest.raises(FileNotFoundError, match="lt_shapes_nope.yaml"):
        sweep.main(["--heads", "nope", "--root", "/nonexistent"])
