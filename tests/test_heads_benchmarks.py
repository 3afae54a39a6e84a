"""The lt_shapes head sweep's bookkeeping: finished-run detection, the mean ± spread / paired-interval tables, and
the two regimes' configs."""

from __future__ import annotations

import json
import os

import pytest
from _scripts import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sweep():
    return load_script("benchmarks/lt_shapes_heads.py", "lt_shapes_heads")


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


def test_summary_reports_mean_spread_and_paired_intervals(sweep):
    runs = {
        "baseline": {0: _summary(2.0), 1: _summary(4.0), 2: _summary(3.0)},
        "lda": {0: _summary(5.0), 1: _summary(9.0), 2: _summary(4.0)},  # APr gains 3, 5, 1: interval (-2, 8)
        "ldam": {0: _summary(3.0), 1: _summary(5.0), 2: _summary(4.0)},  # +1 on every seed
    }
    markdown, table = sweep.summarise(runs, [0, 1, 2], "1000 iterations")
    bbox = markdown.split("bbox:")[1].split("segm:")[0]
    baseline_row = next(line for line in bbox.splitlines() if line.startswith("| baseline"))
    lda = [c.strip() for c in next(ln for ln in bbox.splitlines() if ln.startswith("| lda")).strip("|").split("|")]
    ldam = [c.strip() for c in next(ln for ln in bbox.splitlines() if ln.startswith("| ldam")).strip("|").split("|")]
    assert "| 3.0 ± 1.0 |" in baseline_row  # bbox APr mean and sample std of (2, 4, 3)
    apr = 2 + 1 + len(sweep.METRICS)  # head, runs, metrics, then the deltas in METRICS order
    assert lda[apr].startswith("+3.0 [-") and not lda[apr].endswith("*")  # 3 ± 4.303 * 2 / sqrt(3)
    assert ldam[apr] == "+1.0 [+1.0, +1.0] *"
    findings = markdown.split("excludes zero (per comparison")[1]
    assert "ldam bbox APr gain +1.0 [+1.0, +1.0]" in findings and "lda bbox APr" not in findings
    assert len(table.strip().splitlines()) == 1 + 3 * 3 * 2  # header + head x seed x task
    # LVIS reports -100 for a frequency group without classes: missing, not a value to average
    empty = {"baseline": {0: {"max_iter": 2, "results": {"bbox": {"AP": 1.0, "APr": -100.0}}}}}
    markdown, _ = sweep.summarise(empty, [0], "2 iterations")
    assert "| baseline | 1 | 1.0 | n/a |" in markdown


def test_pretrained_regime_configs_differ_from_scratch_only_in_the_start(sweep):
    from lt_detectron.config import load_config_dict

    for head in sweep.HEADS:
        scratch = load_config_dict(sweep.config_of(head, "scratch"))
        pretrained = load_config_dict(sweep.config_of(head, "pretrained"))
        assert scratch["MODEL"]["WEIGHTS"] == "" and pretrained["MODEL"]["WEIGHTS"].endswith(".pth"), head
        assert pretrained["SOLVER"] == scratch["SOLVER"], head
        assert pretrained["MODEL"].get("LT") == scratch["MODEL"].get("LT"), head
    assert sweep.pretrained_weights("scratch") is None
    assert sweep.pretrained_weights("pretrained").startswith(sweep.REPO)


def test_unknown_head_fails_before_training(sweep):
    with pytest.raises(FileNotFoundError, match="lt_shapes_nope.yaml"):
        sweep.main(["--heads", "nope", "--root", "/nonexistent"])
    with pytest.raises(FileNotFoundError, match="pretrained/lt_shapes_meta.yaml"):
        sweep.main(["--regime", "pretrained", "--heads", "meta", "--root", "/nonexistent"])


def test_gains_figure_is_written_with_one_point_per_head(sweep, tmp_path):
    runs = {
        "baseline": {0: _summary(2.0), 1: _summary(4.0), 2: _summary(3.0)},
        "ldam": {0: _summary(3.0), 1: _summary(5.0), 2: _summary(4.0)},
    }
    path = sweep.plot_gains(runs, str(tmp_path / "gains.png"), "test")
    assert path and (tmp_path / "gains.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sweep.plot_gains({"ldam": runs["ldam"]}, str(tmp_path / "none.png"), "test") is None  # no baseline


def test_every_head_has_a_config_in_both_regimes_and_lda_shared_is_the_papers_gradient(sweep):
    from lt_detectron.engine import build_cfg

    for regime in sweep.REGIMES:
        for head in sweep.HEADS + sweep.EXTRA_HEADS[regime]:
            assert sweep.config_of(head, regime)
    shared = build_cfg(sweep.config_of("lda_shared", "pretrained"), [])
    default = build_cfg(sweep.config_of("lda", "pretrained"), [])
    assert shared.MODEL.LT.LDA.BALANCED_FEATURE_GRAD is True and default.MODEL.LT.LDA.BALANCED_FEATURE_GRAD is False
    assert shared.MODEL.WEIGHTS == default.MODEL.WEIGHTS != ""
