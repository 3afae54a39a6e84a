"""benchmarks/digits_lt.py's table: paired intervals against CE, claims only where the interval excludes zero,
diverged runs dropped from their pairs, and the results file with its environment header."""

from __future__ import annotations

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def digits():
    return load_script("benchmarks/digits_lt.py", "lt_bench_digits")


def _run(bacc: float, few: float = 50.0) -> dict:
    return {"bacc": bacc, "few": few, "ece": 5.0, "top1": bacc}


def _row(table: str, name: str) -> list:
    line = next(line for line in table.splitlines() if line.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_gain_claimed_only_where_the_paired_interval_excludes_zero(digits):
    seeds = [0, 1, 2]
    results = {
        "ce": {0: _run(80.0), 1: _run(90.0), 2: _run(85.0)},
        # +1 on every seed: a small but consistent gain (interval [+1, +1])
        "lade": {0: _run(81.0, 60.0), 1: _run(91.0, 40.0), 2: _run(86.0, 55.0)},
        # a larger mean gain (+2) but inconsistent: -3, +8, +1 -> interval contains zero
        "ldam": {0: _run(77.0), 1: _run(98.0), 2: _run(86.0)},
        # seed 1 diverged: paired over seeds 0 and 2 only
        "lda": {0: _run(79.0), 1: None, 2: _run(84.0)},
    }
    times = {name: [1.0] for name in results}
    table = digits.format_table(results, times, seeds)
    assert _row(table, "lade")[2] == "+1.0 [+1.0, +1.0] *"
    assert _row(table, "ldam")[2].startswith("+2.0 [-") and not _row(table, "ldam")[2].endswith("*")
    lda = _row(table, "lda (1 of 3 seeds diverged)")
    assert lda[1] == "81.5 ± 3.5" and lda[2].startswith("-1.0 [")  # paired over seeds 0 and 2: (-1, -1)
    findings = digits.format_findings(results, seeds)
    bacc = next(line for line in findings.splitlines() if line.startswith("- bACC"))
    assert "gain over CE (95% interval above zero): lade (+1.0 [+1.0, +1.0])" in bacc
    assert "loss (interval below zero): lda" in bacc and "no difference shown: ldam." in bacc
    per_seed = digits.format_per_seed(results, seeds)
    assert "| lda | 79.00 | diverged | 84.00 |" in per_seed
