"""Forward+backward time of each lt_detectron loss divided by F.cross_entropy's on the same tensors.

Every round times all contenders once, in a shuffled order, right after one another (each after one untimed call
of itself); each ratio is the median over rounds of (loss time / cross-entropy time in the same round), so machine
load affects both sides alike.

    python benchmarks/loss_throughput.py [--repeats 15] [--threads N] [--device cpu|cuda] [--clock cpu|wall]
                                         [--heap steady|default] [--shapes 8192x1204 256x1000] [--out FILE.md]

On CUDA every timed block is bracketed by torch.cuda.synchronize() and measured on the wall clock, so a ratio is
the GPU time of the kernels a loss launches (plus its host work and any synchronisation it forces).

Heap: with glibc's default settings a freed 1 MB (256 x 1000 float32) buffer is often handed back to the OS and
page-faulted in again on the next call (measured: 50-450 minor faults per call, depending on the order in which a
loss allocates and frees, not on its arithmetic). `--heap steady` (default) raises glibc's mmap and trim thresholds
with mallopt (what LD_PRELOADing jemalloc or tcmalloc, the usual advice for PyTorch on CPU, also avoids), so the
ratios compare the losses' work rather than the allocator's page faults; `--heap default` shows the other case.
The header line names the setting used.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import random
import statistics
import sys
import time
from functools import partial
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from lt_detectron.losses import (
    EQLv2Loss,
    accumulate_class_counts,
    balanced_softmax_loss,
    cb_cross_entropy,
    class_weights,
    focal_loss,
    lade_loss,
    lda_divergence,
    ldam_loss,
    ldam_margins,
    prior_from_counts,
    seesaw_loss,
)
from lt_detectron.utils import atomic_write

COSINE_CE = "cross_entropy (cosine logits)"
# The project's throughput budget (ratio to cross-entropy), keyed by contender name: on CPU ...
TARGETS = {
    "cb": 2.0,
    "focal": 2.0,
    "ldam": 2.0,
    "ldam (cosine logits)": 2.0,
    "ldam (margins precomputed)": 2.0,
    "balanced_softmax": 2.0,
    "lade": 3.0,
    "seesaw": 2.0,
    "eqlv2": 2.0,
    "lda_divergence": 1.0,
}
# ... and on a GPU, where the work per element is cheap and extra kernel launches or host syncs dominate.
CUDA_TARGETS = {**{name: 1.5 for name in TARGETS if name != "lda_divergence"}, "lade": 2.0}


def long_tailed_counts(num_classes: int, imbalance: float = 100.0) -> torch.Tensor:
    """n_c = floor(1000 * (1/IF)^{c/(C-1)}) (docs/methods.md#data-and-metrics), at least 1."""
    exponent = torch.arange(num_classes, dtype=torch.float64) / max(num_classes - 1, 1)
    return torch.floor(1000.0 * imbalance ** (-exponent)).clamp_min(1.0)


# "cpu": CPU time of this process, immune to other processes preempting it on a shared machine (default with one
# thread); "wall": elapsed time (default otherwise; the only meaningful clock for CUDA).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def timed(step: Callable[[], torch.Tensor], wrt: torch.Tensor, inner: int, device: torch.device, clock) -> float:
    """Seconds for `inner` forward+backward passes (autograd.grad: no accumulation into .grad)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    for _ in range(inner):
        torch.autograd.grad(step(), wrt)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def steady_heap() -> bool:
    """mallopt(M_MMAP_THRESHOLD = 64 MiB, M_TRIM_THRESHOLD = 256 MiB): keep freed buffers in the heap (glibc only)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))


Contenders = Dict[str, Tuple[Callable[[], torch.Tensor], torch.Tensor]]


def contenders(batch: int, num_classes: int, device: torch.device) -> Contenders:
    generator = torch.Generator().manual_seed(0)
    counts = long_tailed_counts(num_classes)
    prior = prior_from_counts(counts).to(device)
    weight = class_weights(counts).to(device)
    margins = ldam_margins(counts).float().to(device)
    logits = torch.randn(batch, num_classes, generator=generator).to(device).requires_grad_()
    targets = torch.multinomial(prior.cpu(), batch, replacement=True, generator=generator).to(device)
    # Seesaw's cumulative counts, updated by the caller on every batch (the update is timed with the loss). EQLv2 reads
    # the last column as the background; its step includes the statistics update.
    seesaw_counts = counts.clone().to(device)
    eqlv2 = EQLv2Loss(num_classes - 1).to(device)
    steps = {
        "cross_entropy": lambda: F.cross_entropy(logits, targets),
        "cb": lambda: cb_cross_entropy(logits, targets, weight),
        "focal": lambda: focal_loss(logits, targets),
        "focal (sigmoid)": lambda: focal_loss(logits, targets, form="sigmoid"),
        "ldam": lambda: ldam_loss(logits, targets, counts),
        # What build_loss("ldam") and the detection head call: margins computed once, not from counts per call.
        "ldam (margins precomputed)": lambda: ldam_loss(logits, targets, None, margins=margins),
        "balanced_softmax": lambda: balanced_softmax_loss(logits, targets, prior),
        "lade": lambda: lade_loss(logits, targets, prior),
        "lade (column)": lambda: lade_loss(logits, targets, prior, importance="column"),
        "seesaw": lambda: seesaw_loss(logits, targets, accumulate_class_counts(seesaw_counts, targets)),
        "eqlv2": lambda: eqlv2(logits, targets),
    }
    timed_steps = {name: (step, logits) for name, step in steps.items()}
    # LDAM's s = 30 on N(0, 1) logits sends most exp() results into float32 denormals, which are slow on CPUs.
    # LDAM is meant for cosine logits in [-1, 1] (a normalised linear classifier): time it there too, against
    # cross-entropy on the same cosine logits.
    cosine = F.normalize(torch.randn(batch, 64, generator=generator), dim=1)
    cosine = (cosine @ F.normalize(torch.randn(num_classes, 64, generator=generator), dim=1).T).to(device)
    cosine.requires_grad_()
    timed_steps[COSINE_CE] = (lambda: F.cross_entropy(cosine, targets), cosine)
    timed_steps["ldam (cosine logits)"] = (lambda: ldam_loss(cosine, targets, counts), cosine)
    return timed_steps


def divergence_contenders(device: torch.device, rows: int = 8192, dim: int = 128, classes: int = 1203) -> Contenders:
    """lda_divergence on rows x dim features over `classes` classes vs cross-entropy on rows x (classes + 1) logits."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(rows, classes + 1, generator=generator).to(device).requires_grad_()
    logit_targets = torch.randint(0, classes + 1, (rows,), generator=generator).to(device)
    features = torch.randn(rows, dim, generator=generator).to(device).requires_grad_()
    prior = prior_from_counts(long_tailed_counts(classes))
    feature_targets = torch.multinomial(prior, rows, replacement=True, generator=generator).to(device)

    def divergence() -> torch.Tensor:
        intra, inter = lda_divergence(features, feature_targets)
        return intra + inter

    return {
        "cross_entropy": (lambda: F.cross_entropy(logits, logit_targets), logits),
        "lda_divergence": (divergence, features),
    }


def ratios_to_ce(
    steps: Contenders, repeats: int, device: torch.device, min_seconds: float, clock: Callable[[], float]
) -> Dict[str, float]:
    names = list(steps)
    for name in names:  # warm-up (allocator, lazy imports, kernels)
        timed(*steps[name], 1, device, clock)
    # Repeat small problems inside one measurement so each lasts >= min_seconds (timer and scheduler noise).
    inner = max(1, math.ceil(min_seconds / max(timed(*steps["cross_entropy"], 1, device, clock), 1e-6)))
    per_round: Dict[str, List[float]] = {name: [] for name in names if name not in ("cross_entropy", COSINE_CE)}
    shuffler = random.Random(0)
    for _ in range(repeats):
        order = shuffler.sample(names, len(names))  # neighbours change every round
        times = {}
        for name in order:
            timed(*steps[name], 1, device, clock)  # untimed: the allocator settles to this contender's buffers
            times[name] = timed(*steps[name], inner, device, clock)
        for name in per_round:
            baseline = COSINE_CE if name.endswith("(cosine logits)") else "cross_entropy"
            per_round[name].append(times[name] / times[baseline])
    return {name: statistics.median(values) for name, values in per_round.items()}


def parse_shape(text: str, parts: int) -> Tuple[int, ...]:
    """'8192x1204' -> (8192, 1204); a clear error for anything else."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        values = ()
    if len(values) != parts or min(values, default=0) < 1:
        example = "8192x128x1203" if parts == 3 else "8192x1204"
        raise argparse.ArgumentTypeError(
            f"expected {parts} positive integers joined by 'x' (e.g. {example}); got {text!r}"
        )
    return values


def resolve_device(name: str) -> torch.device:
    """`--device` as a torch.device, with a clear error when CUDA was asked for but is not there."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch {torch.__version__} sees no CUDA device. Fix: run on a GPU machine.")
    return device


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per shape (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--min-ms", type=float, default=50.0, help="repeat small problems to last at least this long")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default=None, help="default: cpu with 1 CPU thread on CPU, else wall"
    )
    parser.add_argument("--heap", choices=("steady", "default"), default="steady", help="see the module docstring")
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=lambda t: parse_shape(t, 2),
        default=[(8192, 1204), (256, 1000)],
        help="BATCHxCLASSES logit shapes (default: 8192x1204 256x1000)",
    )
    parser.add_argument(
        "--divergence-shape",
        type=lambda t: parse_shape(t, 3),
        default=(8192, 128, 1203),
        help="ROWSxDIMxCLASSES of lda_divergence's features (default: 8192x128x1203)",
    )
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    heap = "glibc default"
    if args.heap == "steady":
        heap = "steady (mallopt)" if steady_heap() else "default (mallopt unavailable)"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    shapes = [tuple(shape) for shape in args.shapes]
    # Process CPU time is only a fair clock single-threaded: idle OpenMP workers spin and bill CPU time.
    clock_name = args.clock or ("cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall")
    if device.type == "cuda" and clock_name == "cpu":
        raise SystemExit("--clock cpu measures host time only; CUDA kernels run asynchronously. Fix: --clock wall.")
    measure = partial(
        ratios_to_ce, repeats=args.repeats, device=device, min_seconds=args.min_ms / 1000.0, clock=CLOCKS[clock_name]
    )
    columns = {shape: measure(contenders(*shape, device)) for shape in shapes}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"device={device_description(device)} threads={torch.get_num_threads()} clock={clock_name} "
        f"repeats={args.repeats} torch={torch.__version__} heap={heap} "
        f"load_average_1min={load:.1f} (other processes on the machine skew small shapes most)",
        "forward+backward time / F.cross_entropy forward+backward on the same tensors (median ratio)",
        "",
        "| loss | " + " | ".join(f"{b} x {c}" for b, c in shapes) + f" | target ({device.type}) |",
        "|" + "---|" * (len(shapes) + 2),
    ]
    targets = CUDA_TARGETS if device.type == "cuda" else TARGETS
    for name in columns[shapes[0]]:
        target = targets.get(name)
        cells = " | ".join(f"{columns[shape][name]:.2f}x" for shape in shapes)
        lines.append(f"| {name} | {cells} | {f'<= {target:g}x' if target else '-'} |")
    rows, dim, classes = args.divergence_shape
    divergence = measure(divergence_contenders(device, rows, dim, classes))["lda_divergence"]
    blanks = " - |" * (len(shapes) - 1)
    lines.append(
        f"| lda_divergence ({rows} x {dim}, {classes} classes) vs CE {rows} x {classes + 1} | {divergence:.2f}x |"
        f"{blanks} {'<= 1x' if device.type == 'cpu' else '-'} |"
    )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        atomic_write(args.out, lambda f: f.write(text), binary=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
