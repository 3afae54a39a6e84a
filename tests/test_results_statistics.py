"""benchmarks/_results.py: Student-t critical values, paired 95 % intervals, mean ± std, the results-file header."""

from __future__ import annotations

import math

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def results():
    return load_script("benchmarks/_results.py", "lt_bench_results")


# Published two-sided 95 % critical values of Student's t (any statistics textbook's table), df -> t_{0.975}.
T_TABLE = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
    40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip


def test_t_quantile_matches_the_published_table(results):
    for df, expected in T_TABLE.items():
        assert results.t_quantile_975(df) == pytest.approx(expected, abs=5e-4), df
    assert results.t_quantile_975(10_000) == pytest.approx(1.95996, abs=1e-3)  # tends to the normal quantile


def test_t_quantile_matches_scipy_where_installed(results):
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 19, 30, 55):
        assert results.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9), df


def test_t_quantile_rejects_bad_df(results):
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="df must be a positive integer"):
            results.t_quantile_975(bad)


def test_paired_difference_by_hand(results):
    # d = (1, 2, 3, 4, 5): mean 3, sd sqrt(2.5), half width 2.776 * sqrt(2.5) / sqrt(5) = 1.963
    base = {s: 10.0 for s in range(5)}
    method = {s: 10.0 + s + 1 for s in range(5)}
    diff = results.paired_difference(method, base)
    assert diff.n == 5 and diff.mean == pytest.approx(3.0) and diff.std == pytest.approx(math.sqrt(2.5))
    assert diff.low == pytest.approx(3.0 - 1.9632, abs=1e-3) and diff.high == pytest.approx(3.0 + 1.9632, abs=1e-3)
    assert diff.excludes_zero and diff.verdict == "gain"
    assert diff.format() == "+3.0 [+1.0, +5.0]"


def test_pairing_is_by_seed_not_by_position(results):
    # Unpaired, the two sets look the same (means 12 vs 12); paired by seed, every seed gains exactly +1.
    base = {0: 10.0, 1: 14.0, 2: 12.0}
    method = {2: 13.0, 0: 11.0, 1: 15.0}
    diff = results.paired_difference(method, base)
    assert diff.mean == pytest.approx(1.0) and diff.std == pytest.approx(0.0) and diff.excludes_zero


def test_interval_containing_zero_is_not_a_gain(results):
    diff = results.paired_difference({0: 11.0, 1: 9.5, 2: 12.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert diff.mean > 0 and diff.low < 0 < diff.high
    assert not diff.excludes_zero and diff.verdict == "no difference shown"
    loss = results.paired_difference({0: 8.0, 1: 7.0, 2: 7.5}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert loss.verdict == "loss" and loss.format().startswith("-2.5 [")


def test_non_finite_values_and_missing_seeds_drop_out_of_the_pair(results):
    diff = results.paired_difference({0: 11.0, 1: float("nan"), 2: 12.0, 3: 5.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert diff.n == 2 and diff.mean == pytest.approx(1.5)
    one = results.paired_difference({0: 11.0}, {0: 10.0})
    assert one.n == 1 and math.isnan(one.low) and not one.excludes_zero and one.format() == "+1.0 (1 seed)"
    assert results.paired_difference({}, {0: 1.0}).format() == "n/a"


def test_mean_std_format(results):
    assert results.format_mean_std([2.0, 4.0]) == "3.0 ± 1.4"
    assert results.format_mean_std([2.0, None, float("nan")]) == "2.0"
    assert results.format_mean_std([]) == "n/a"


def test_results_file_has_command_environment_and_body(results, tmp_path):
    path = tmp_path / "out" / "table.md"
    text = results.write_results(str(path), "A table", "python benchmarks/x.py --seeds 3", "| a |\n|---|\n| 1 |")
    assert path.read_text() == text
    for expected in ("# A table", "python benchmarks/x.py --seeds 3", "- machine: ", "- git commit: ", "torch "):
        assert expected in text
    assert text.rstrip().endswith("| 1 |")


def test_lock_pins_are_compared_with_the_installed_packages(results, tmp_path):
    lock = tmp_path / "env.lock"
    lock.write_text("# comment\npytest==0.0.1 \\\n    --hash=sha256:abc\nno-such-package-xyz==1.0\n")
    pins = results._lock_pins(str(lock))
    assert pins == {"pytest": "0.0.1", "no-such-package-xyz": "1.0"}
    status = results._lock_status(str(lock), results._installed())
    assert "1 differ: pytest" in status and "(lock 0.0.1)" in status
    assert "1 not installed: no-such-package-xyz" in status
