"""Why a head collapses: per-loss-term gradient norms on the box head, and its dead-unit fraction, while training.

Trains a demo config (tools/demo.py's model and data, the config's own optimiser, schedule and gradient clipping)
and every `--every` iterations prints one json line with, for each loss term, the norm of its gradient on the box
head's weights (autograd.grad on the same forward pass, before the step), the share of box-head output units that
are zero on every RoI of the batch ("dead", 1.0 = collapsed head), the LDA risk balancer's a_t, and the losses.

    OMP_NUM_THREADS=1 python benchmarks/box_head_probe.py --config configs/demo/lt_shapes_lda.yaml --iters 200 \
        MODEL.LT.LDA.BALANCED_FEATURE_GRAD True          # the paper's shared gradient: collapses on lt_shapes
    python benchmarks/box_head_probe.py --iters 2 --every 1   # smoke run
    python benchmarks/box_head_probe.py --summarise default=a.jsonl shared=b.jsonl   # one table of saved probes
"""

from __future__ import annotations

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before torch loads: the pinned CPU kernels of the results (docs/results.md)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import List, Optional  # noqa: E402

import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SUMMARY_ITERATIONS = (20, 50, 70, 90, 100, 120, 140)


def summarise(runs: List[str]) -> str:
    """A markdown table from saved probe outputs (`label=path.jsonl`): dead units and a_t at SUMMARY_ITERATIONS, the
    largest dead fraction, and the gradient norms of lambda_b a_t L_b and lambda_u L_u at iteration 100."""
    header = ["run"] + [f"it {i}: dead / a_t" for i in SUMMARY_ITERATIONS] + ["max dead", "grad L_b / L_u at 100"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        label, _, path = run.partition("=")
        with open(path) as f:
            records = {r["iter"]: r for r in (json.loads(line) for line in f if line.startswith("{"))}
        cells = []
        for i in SUMMARY_ITERATIONS:
            r = records.get(i)
            cells.append("–" if r is None else f"{100 * r['dead']:.1f} % / {r['alpha']:.0f}")
        at_100 = records.get(100, {}).get("grad_norm", {})
        grad_b, grad_u = (at_100.get(k, float("nan")) for k in ("loss_cls_balanced", "loss_cls_unbalanced"))
        grads = f"{grad_b:.1f} / {grad_u:.1f}"
        max_dead = max(r["dead"] for r in records.values())
        lines.append("| " + " | ".join([label] + cells + [f"{100 * max_dead:.1f} %", grads]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml"))
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="probe every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--summarise", nargs="+", metavar="LABEL=JSONL", help="print a table of saved probe outputs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise), end="")
        return 0

    from detectron2.engine import DefaultTrainer
    from detectron2.utils.events import EventStorage

    from lt_detectron.engine import LTTrainer
    from lt_detectron.engine.setup import build_cfg, check_cfg_datasets

    torch.manual_seed(args.seed)
    cfg = build_cfg(args.config, args.opts)
    check_cfg_datasets(cfg, train=True)
    model = LTTrainer.build_model(cfg)
    model.train()
    optimizer = DefaultTrainer.build_optimizer(cfg, model)  # includes SOLVER.CLIP_GRADIENTS
    scheduler = DefaultTrainer.build_lr_scheduler(cfg, optimizer)
    data = iter(LTTrainer.build_train_loader(cfg))
    box_head = model.roi_heads.box_head
    head_weights = [p for name, p in box_head.named_parameters() if name.endswith("weight")]
    outputs = {}
    box_head.register_forward_hook(lambda module, inputs, output: outputs.__setitem__("features", output))
    balancer = getattr(model.roi_heads.box_predictor, "risk_balancer", None)
    start = time.perf_counter()
    with EventStorage(0) as storage:
        for iteration in range(args.iters):
            storage.iter = iteration
            losses = model(next(data))
            if iteration % args.every == 0:
                norms = {}
                for name, value in losses.items():
                    if value.requires_grad:
                        grads = torch.autograd.grad(value, head_weights, retain_graph=True, allow_unused=True)
                        norms[name] = round(
                            float(sum((g.square().sum() for g in grads if g is not None), 0.0)) ** 0.5, 4
                        )
                features = outputs["features"].detach()
                record = {
                    "iter": iteration,
                    "lr": scheduler.get_last_lr()[0],
                    "dead": round(float((features <= 0).all(dim=0).float().mean()), 3),
                    "alpha": round(balancer.alpha, 2) if balancer is not None else None,
                    "grad_norm": norms,
                    "losses": {k: round(float(v), 4) for k, v in losses.items()},
                    "seconds": round(time.perf_counter() - start),
                }
                print(json.dumps(record), flush=True)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            scheduler.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
