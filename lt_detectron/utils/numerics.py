"""The process policy of every entry point: reproducible CPU numerics and OpenMP threads that sleep.

PyTorch (ATen), oneDNN and MKL pick their CPU kernels by the instruction set the CPU offers; AVX-512 and AVX2 kernels
round differently, and training amplifies the difference: the same data and seed gave bbox AP 12.4 on a Zen 4
(AVX-512) and 15.0 on an AVX2-only CPU (issue 20). `pin_cpu_numerics()` caps all three at AVX2, which every x86-64
CPU of the last decade has, so a recorded number is reproduced on another machine. It must run before torch is
imported: the libraries read these variables once, when they load. Subprocesses inherit them.

Opt out with LT_NATIVE_ISA=1 (native kernels, faster on AVX-512 CPUs, numbers not comparable with the recorded ones);
a variable already set by the user (e.g. ATEN_CPU_CAPABILITY=default) is kept. See docs/results.md, "Reproducible
numerics". Import-light on purpose (no torch, no numpy): entry points import it first.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from typing import Dict, List

__all__ = ["PINNED_ISA", "OPT_OUT", "pin_cpu_numerics", "numerics_status", "cpu_model", "cpu_flags", "numerics_info"]

# Set before torch loads; ATen, oneDNN and MKL each have their own switch.
PINNED_ISA: Dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
OPT_OUT = "LT_NATIVE_ISA"
# /proc/cpuinfo flags that decide which kernels run (reported in results headers and demo_results.json).
RELEVANT_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT, "").strip().lower() not in ("", "0", "false", "no")


def pin_cpu_numerics() -> str:
    """Pin the CPU kernel ISA (unless LT_NATIVE_ISA=1) and let OpenMP threads sleep; returns `numerics_status()`.

    Call it first in every entry point, before anything imports torch. Called later, it still sets the variables
    for subprocesses, and warns that this process keeps the kernels it loaded with.
    """
    # OpenMP threads that busy-wait collapse when another process shares the cores (0.6 -> 5 s/iter on 2 cores,
    # benchmarks/results/lt_shapes_demo.md); passive waiting costs little on an idle machine. Not a numerics setting.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Detectron2's anchor generator calls torch.meshgrid without `indexing` (the result is the same): the warning it
    # prints on every run says nothing the user can act on.
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)
    if _opted_out() or not _can_pin():
        return numerics_status()
    changed = [k for k in PINNED_ISA if k not in os.environ]  # a value the user set is kept
    os.environ.update({k: PINNED_ISA[k] for k in changed})
    if changed and "torch" in sys.modules:  # once: a later call finds the variables set
        warnings.warn(
            f"torch was imported before lt_detectron.utils.numerics.pin_cpu_numerics(), so {', '.join(changed)} "
            "did not take effect in this process (its numbers may differ from the recorded ones on another CPU). Fix: "
            "call pin_cpu_numerics() before importing torch, or export "
            + " ".join(f"{k}={v}" for k, v in PINNED_ISA.items())
            + f" before starting Python (or {OPT_OUT}=1 to silence this and keep native kernels).",
            RuntimeWarning,
            stacklevel=2,
        )
    return numerics_status()


def _can_pin() -> bool:
    """x86-64 with AVX2 and FMA: elsewhere the variables mean nothing (ARM) or would select missing instructions."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return False
    flags = cpu_flags()
    return not flags or {"avx2", "fma"} <= set(flags)  # unknown flags (no /proc/cpuinfo): trust an x86-64 CPU


def numerics_status() -> str:
    """One phrase: 'pinned to AVX2', 'native (LT_NATIVE_ISA=1)', or what else is set and why."""
    current = {k: os.environ.get(k) for k in PINNED_ISA}
    if current == PINNED_ISA:
        return "pinned to AVX2"
    if _opted_out():
        return f"native ({OPT_OUT}=1)"
    if not _can_pin():
        return f"native (not pinned: {platform.machine()} CPU without AVX2/FMA or not x86-64)"
    custom = ", ".join(f"{k}={v}" for k, v in current.items() if v is not None and v != PINNED_ISA[k])
    return f"custom ({custom or 'partly unset'}; not the pinned AVX2)"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The RELEVANT_FLAGS the CPU has (empty when /proc/cpuinfo has no x86 flags line)."""
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [f for f in RELEVANT_FLAGS if f in present]
    return []


def _cpuinfo_lines() -> List[str]:
    try:
        with open("/proc/cpuinfo") as f:
            lines = []
            for line in f:  # the first processor's block is enough
                if not line.strip():
                    break
                lines.append(line)
            return lines
    except OSError:
        return []


def numerics_info() -> Dict[str, object]:
    """What decided this process's CPU numerics, for results headers and demo_results.json."""
    info: Dict[str, object] = {
        "isa": numerics_status(),
        "env": {k: os.environ.get(k, "unset") for k in (*PINNED_ISA, OPT_OUT)},
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
    }
    torch = sys.modules.get("torch")  # what ATen actually dispatches to; only asked when torch is loaded already
    if torch is not None and hasattr(getattr(torch, "backends", None), "cpu"):
        info["aten_kernels"] = torch.backends.cpu.get_cpu_capability()
    return info
