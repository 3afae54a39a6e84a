"""Shared by the benchmark scripts: the environment header of a results file, paired-difference statistics, and
the content fingerprint of a generated lt_shapes dataset.

A results file (`benchmarks/results/*.md`) starts with the environment it was measured in (lock file hashes and
whether the installed packages match the lock, Python / torch / Detectron2 / numpy / OpenCV versions, CPU model,
cores, threads, the CPU kernel ISA setting and the CPU's relevant flags, date, git commit) so a reader can tell
which numbers are comparable (docs/results.md, "Reproducible numerics").

Statistics. Seeds are paired: the same seed gives the baseline and a method the same data split, data order and
initialisation, so a method's gain is estimated from the per-seed differences d_i = method_i - baseline_i:
mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n), the two-sided 95 % Student-t interval. A gain (or loss) is claimed
only where that interval excludes zero. The intervals are per comparison (no multiple-comparison correction):
with 15 methods, about one interval in 20 excludes zero by chance when nothing differs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from glob import glob
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from lt_detectron.utils.io import file_digest
from lt_detectron.utils.numerics import cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = [
    "t_quantile_975",
    "PairedDifference",
    "paired_difference",
    "mean_std",
    "format_mean_std",
    "environment_header",
    "numerics_line",
    "lock_files",
    "lt_shapes_fingerprint",
    "write_results",
    "format_markdown_table",
    "git_commit",
]


# ------------------------------------------------------------------------------------------------ statistics


def _t_central_probability(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df > 0: the closed-form finite series (Abramowitz & Stegun 26.7.3/4)."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term, total = 1.0, 1.0
        for k in range(1, (df - 3) // 2 + 1):  # 1 + 2/3 c^2 + (2*4)/(3*5) c^4 + ... up to c^(df-3)
            term *= (2 * k) / (2 * k + 1) * c * c
            total += term
        return 2.0 / math.pi * (theta + s * c * total)
    term, total = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):  # 1 + 1/2 c^2 + (1*3)/(2*4) c^4 + ... up to c^(df-2)
        term *= (2 * k - 1) / (2 * k) * c * c
        total += term
    return s * total


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 % critical value).

    Exact for integer df (bisection on the closed-form CDF, to ~1e-12); no scipy needed. df=1: 12.706, df=4: 2.776.
    """
    if int(df) != df or df < 1:
        raise ValueError(f"t_quantile_975: df must be a positive integer, got {df!r}")
    df = int(df)
    lo, hi = 0.0, 1000.0  # P(|T| < 1000) > 0.95 for every df >= 1
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_central_probability(mid, df) < 0.95:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class PairedDifference:
    """mean(d) with its two-sided 95 % t-interval [low, high]; n pairs. low/high are NaN when n < 2."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        """'gain' / 'loss' when the interval excludes zero, else 'no difference shown' (or 'n < 2')."""
        if self.n < 2:
            return f"n = {self.n}: no interval"
        if not self.excludes_zero:
            return "no difference shown"
        return "gain" if self.mean > 0 else "loss"

    def format(self, digits: int = 1) -> str:
        """'+1.5 [+0.2, +2.8]' (mean and 95 % interval, signed)."""
        if self.n == 0:
            return "n/a"
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (1 seed)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _is_finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def _finite(values: Iterable[Optional[float]]) -> List[float]:
    return [float(v) for v in values if _is_finite(v)]


def paired_difference(method: Mapping[int, float], baseline: Mapping[int, float]) -> PairedDifference:
    """method - baseline over the seeds both have a finite value for (a diverged run drops its seed from the pair)."""
    seeds = [s for s in method if s in baseline and _is_finite(method[s]) and _is_finite(baseline[s])]
    diffs = [float(method[s]) - float(baseline[s]) for s in sorted(seeds)]
    n = len(diffs)
    if n == 0:
        return PairedDifference(math.nan, math.nan, 0, math.nan, math.nan)
    mean = statistics.mean(diffs)
    if n == 1:
        return PairedDifference(mean, math.nan, 1, math.nan, math.nan)
    std = statistics.stdev(diffs)
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return PairedDifference(mean, std, n, mean - half, mean + half)


def mean_std(values: Iterable[Optional[float]]) -> tuple[float, float, int]:
    """(mean, sample std, n) over the finite values; std NaN for n < 2."""
    vals = _finite(values)
    if not vals:
        return math.nan, math.nan, 0
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan), len(vals)


def format_mean_std(values: Iterable[Optional[float]], digits: int = 1) -> str:
    """'32.4 ± 0.4' (mean ± sample std over seeds), one value as is, 'n/a' when none is finite."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# ----------------------------------------------------------------------------------------------- environment


def _sha256_file(path: str) -> str:
    return file_digest(path)


def lock_files(repo: str = REPO) -> List[str]:
    """Lock files of the repository: *.lock at the top level, requirements*.lock and requirements/*.lock."""
    found = set()
    for pattern in ("*.lock", "requirements*.lock", os.path.join("requirements", "*.lock")):
        found.update(glob(os.path.join(repo, pattern)))
    return sorted(found)


def _lock_pins(path: str) -> Dict[str, str]:
    """{normalised name: version} of the `name==version` lines of a pip-style lock (comments, hashes ignored)."""
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].split(";", 1)[0].strip().rstrip("\\").strip()
            if "==" in line and not line.startswith("-"):
                name, version = line.split("==", 1)
                pins[_normalise(name.split("[", 1)[0])] = version.split()[0]
    return pins


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _installed() -> Dict[str, str]:
    from importlib import metadata

    return {_normalise(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def _lock_mismatches(path: str, installed: Dict[str, str]) -> int:
    pins = _lock_pins(path)
    return sum(installed.get(n) != v for n, v in pins.items()) if pins else 1 << 30


def _lock_status(path: str, installed: Dict[str, str]) -> str:
    pins = _lock_pins(path)
    if not pins:
        return "no name==version pins read"
    differ = sorted(n for n, v in pins.items() if n in installed and installed[n] != v)
    missing = sorted(n for n in pins if n not in installed)
    if not differ and not missing:
        return f"installed packages match all {len(pins)} pins"
    parts = []
    if differ:
        shown = ", ".join(f"{n} {installed[n]} (lock {pins[n]})" for n in differ[:5])
        parts.append(f"{len(differ)} differ: {shown}{', ...' if len(differ) > 5 else ''}")
    if missing:
        parts.append(f"{len(missing)} not installed: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
    return "; ".join(parts)


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - a missing optional package is reported, not fatal
        return "not installed"
    return str(getattr(mod, "__version__", "?"))


def numerics_line() -> str:
    """How this process's CPU kernels were chosen (lt_detectron.utils.numerics): the ISA setting, the kernels ATen
    dispatches to, and the CPU flags that matter, so a reader can tell whether a number should reproduce here."""
    from lt_detectron.utils.numerics import numerics_info

    info = numerics_info()
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items())
    aten = f"; ATen kernels in this process: {info['aten_kernels']}" if "aten_kernels" in info else ""
    return f"- CPU numerics: {info['isa']} ({env}{aten}); CPU flags: {' '.join(info['cpu_flags']) or 'unknown'}"


def git_commit(repo: str = REPO) -> str:
    """This checkout's commit, marked when tracked files have uncommitted changes (lt_detectron.utils.provenance)."""
    from lt_detectron.utils.provenance import git_commit as commit_of

    return commit_of(repo)


def environment_header(threads: Optional[str] = None, extra: Optional[Mapping[str, str]] = None) -> List[str]:
    """Markdown bullet lines describing where and with what a table was measured.

    threads: how the script used threads (e.g. "2 worker processes x 1 torch thread"); OMP_NUM_THREADS and
    torch's own thread count are reported as well. extra: more `name: value` lines (e.g. the data fingerprint).
    """
    installed = _installed()
    locks = lock_files()
    lines = ["Environment:", ""]
    if locks:
        # The lock the installed packages are closest to is the one this environment was set up from.
        closest = min(locks, key=lambda p: (_lock_mismatches(p, installed), p))
        for path in locks:
            rel = os.path.relpath(path, REPO)
            status = _lock_status(path, installed) if path == closest else "not this environment's lock"
            lines.append(f"- lock `{rel}` sha256 {_sha256_file(path)[:16]}: {status}")
    else:
        lines.append("- lock file: none in the repository (versions below are what was installed)")
    torch_threads = "?"
    try:
        import torch

        torch_threads = str(torch.get_num_threads())
    except Exception:  # noqa: BLE001
        pass
    versions = ", ".join(
        f"{name} {_version(mod)}"
        for name, mod in (
            ("torch", "torch"),
            ("detectron2", "detectron2"),
            ("numpy", "numpy"),
            ("opencv", "cv2"),
            ("pycocotools", "pycocotools"),
        )
    )
    pillow = installed.get("pillow", "not installed")
    versions = versions.replace("pycocotools ?", f"pycocotools {installed.get('pycocotools', '?')}")
    lines += [
        f"- Python {platform.python_version()} ({sys.executable}); {versions}, pillow {pillow}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
        f"- threads: {threads + '; ' if threads else ''}OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, torch threads in this process {torch_threads}",
        numerics_line(),
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- git commit: {git_commit()}",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    return lines


# ------------------------------------------------------------------------------------------------------ data


def lt_shapes_fingerprint(root: str) -> Dict[str, str]:
    """sha256 of a generated lt_shapes dataset: each json file's bytes, all PNG files' bytes and all decoded pixels.

    Images are taken in sorted path order (images/train/*.png, then images/val/*.png); the pixel hash feeds each
    image's file name, shape and RGB bytes as decoded by Pillow (what Detectron2's `read_image` uses), so a change
    of PNG encoder settings alone changes `png_bytes` but not `pixels`.
    """
    import numpy as np
    from PIL import Image

    from lt_detectron.data.lt_shapes import INFO_JSON, TRAIN_JSON, VAL_JSON

    out = {}
    for name in (TRAIN_JSON, VAL_JSON, INFO_JSON):
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing; {root} is not a complete lt_shapes dataset.")
        out[name] = _sha256_file(path)
    png, pixels = hashlib.sha256(), hashlib.sha256()
    files = sorted(glob(os.path.join(root, "images", "train", "*.png"))) + sorted(
        glob(os.path.join(root, "images", "val", "*.png"))
    )
    for path in files:
        with open(path, "rb") as f:
            png.update(f.read())
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        pixels.update(f"{rel}:{arr.shape}".encode())
        pixels.update(arr.tobytes())
    out["images"] = str(len(files))
    out["png_bytes"] = png.hexdigest()
    out["pixels"] = pixels.hexdigest()
    return out


# ------------------------------------------------------------------------------------------------------ output


def write_results(
    path: str,
    title: str,
    command: str,
    body: str,
    threads: Optional[str] = None,
    extra: Optional[Mapping[str, str]] = None,
) -> str:
    """Write `# title`, the regenerating command, the environment header and `body` to `path` atomically."""
    from lt_detectron.utils.io import atomic_write

    text = "\n".join(
        [
            f"# {title}",
            "",
            "Written by the command below; do not edit by hand (rerun it to regenerate).",
            "",
            "```",
            command,
            "```",
            "",
            *environment_header(threads=threads, extra=extra),
            "",
            body.rstrip(),
            "",
        ]
    )
    atomic_write(path, lambda f: f.write(text), binary=False)
    return text


def format_markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _error_bar(d: PairedDifference) -> Optional[List[List[float]]]:
    """matplotlib's asymmetric error bar of the 95 % interval; None (no bar) with fewer than 2 pairs."""
    return [[d.mean - d.low], [d.high - d.mean]] if d.n >= 2 else None


def plot_paired_differences(
    panels: Mapping[str, Mapping[str, Tuple[PairedDifference, PairedDifference]]],
    path: str,
    x_label: str,
    y_label: str,
    title: str = "",
) -> Optional[str]:
    """One panel per key of `panels`: each method at (mean Δx, mean Δy) against the baseline, with its two 95 %
    intervals as error bars, so a gain in y bought with a loss in x shows at a glance. Written atomically as PNG;
    returns the path, or None when no method has a paired difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lt_detectron.utils.io import save_figure_atomic

    panels = {k: {m: d for m, d in v.items() if d[0].n and d[1].n} for k, v in panels.items()}
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), squeeze=False)
    for ax, (name, methods) in zip(axes[0], panels.items()):
        ax.axhline(0.0, color="0.6", lw=1)
        ax.axvline(0.0, color="0.6", lw=1)
        for method, (dx, dy) in methods.items():
            shown = dx.excludes_zero or dy.excludes_zero
            ax.errorbar(dx.mean, dy.mean, xerr=_error_bar(dx), yerr=_error_bar(dy), fmt="o", ms=5, capsize=3,
                        color="#1f4e79" if shown else "0.55", alpha=0.9)  # fmt: skip
            ax.annotate(method, (dx.mean, dy.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Paired differences to the baseline (mean, 95 % interval)", fontsize=10)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)
