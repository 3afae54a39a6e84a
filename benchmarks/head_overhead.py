"""Training-time overhead of the LT box classifiers over Detectron2's stock box predictor (CPU or CUDA).

One LVIS-sized Mask R-CNN R50-FPN (model-zoo config, random weights, 1203 classes, 512 sampled RoIs per image,
batch of 2 images of 512x512 px) is built once; each head's box predictor is swapped into the same model, so
backbone, RPN, box head and mask head are shared. Runs alternate between heads (the order rotates each round)
and every ratio is a median of per-round ratios to the stock predictor measured in the same round:

  whole iteration   forward + backward + SGD step of the whole model            (target <= 1.05x CPU, <= 1.02x GPU)
  box head only     RoI box pooler + box head + predictor + losses, fwd + bwd    (reported)
  predictor only    predictor + losses on fixed box-head features, fwd + bwd: the only code that differs
                    between heads, cheap enough for many rounds (`--predictor-iters`)
  derived           1 + (predictor-only time - stock predictor-only time) / stock whole-iteration time: everything
                    outside the box branch is shared, so this is the whole-iteration ratio with the noise of
                    the (long, noisy on a shared CPU) backbone/RPN/mask part taken out.

The optimiser's learning rate is 0, so every head sees the same weights, proposals and samples. With
`--device cuda` the model, the extra predictors and every input live on the GPU, and each timed call is bracketed
by torch.cuda.synchronize() (wall clock), so it measures the kernels it launched.

    python benchmarks/head_overhead.py       # every LT head: ~8 min on one free core, longer on a loaded machine
    python benchmarks/head_overhead.py --iters 1 --head-iters 2 --heads lda cb   # quick smoke run
    python benchmarks/head_overhead.py --device cuda --size 800 --iters 10 --head-iters 10 --predictor-iters 30
"""

from __future__ import annotations

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before torch loads: the same CPU kernels on every x86 machine (docs/results.md)

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from lt_detectron.config import add_lt_config
from lt_detectron.modeling import BOX_PREDICTOR_REGISTRY, build_box_predictor
from lt_detectron.utils import atomic_write

STOCK = "stock"
DATASET = "head_overhead_lvis_like"


def register_lvis_like_counts(num_classes: int) -> str:
    """A stand-in training set with LVIS-like long-tailed instance counts (no LVIS files needed)."""
    counts = np.maximum(1, np.round(20000.0 * np.arange(1, num_classes + 1) ** -1.3)).astype(int)
    if DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(DATASET)
        MetadataCatalog.remove(DATASET)
    DatasetCatalog.register(
        DATASET, lambda: [{"image_id": c, "annotations": [{"category_id": c}] * int(n)} for c, n in enumerate(counts)]
    )
    MetadataCatalog.get(DATASET).set(thing_classes=[f"class{c}" for c in range(num_classes)])
    return DATASET


def build_cfg(args):
    cfg = get_cfg()
    add_lt_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file("LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.WEIGHTS = ""  # random weights: nothing is downloaded
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = args.num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = args.rois
    cfg.DATASETS.TRAIN = (register_lvis_like_counts(args.num_classes),)
    cfg.SOLVER.IMS_PER_BATCH = args.batch
    return cfg


def synthetic_inputs(args, seed: int = 0) -> List[dict]:
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(args.batch):
        n = args.objects
        xy = torch.rand(n, 2, generator=g) * (args.size - 80)
        wh = 16 + torch.rand(n, 2, generator=g) * 64
        boxes = torch.cat([xy, xy + wh], dim=1)
        inst = Instances((args.size, args.size))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, args.num_classes, (n,), generator=g)
        inst.gt_masks = PolygonMasks([[b[[0, 1, 2, 1, 2, 3, 0, 3]].numpy()] for b in boxes])
        image = torch.rand(3, args.size, args.size, generator=g) * 255
        # On the device once, as a data loader with pinned memory would hand them over; the model's own .to() is
        # then a no-op, so no timed iteration pays a host-to-device copy.
        inputs.append(
            {"image": image.to(device), "instances": inst.to(device), "height": args.size, "width": args.size}
        )
    return inputs


# "cpu": this process's CPU time, immune to other processes preempting it on a shared machine (the default with one
# torch thread on CPU; with more, idle OpenMP workers spin and bill CPU time, so "wall" is the default there, and
# the only clock for CUDA, whose kernels run asynchronously).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.perf_counter
device = torch.device("cpu")


def synchronize() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None]) -> float:
    synchronize()
    start = clock()
    fn()
    synchronize()
    return clock() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # "softmax" and "pc_softmax" train with the stock computation (off by default; "softmax" is a noise check).
    lt_heads = sorted(set(BOX_PREDICTOR_REGISTRY.names()) - {"softmax", "pc_softmax"})
    parser.add_argument("--heads", nargs="+", default=lt_heads, choices=sorted(BOX_PREDICTOR_REGISTRY.names()))
    parser.add_argument("--iters", type=int, default=2, help="whole-iteration rounds (after one warm-up iteration)")
    parser.add_argument("--head-iters", type=int, default=3, help="box-head-only rounds (after one warm-up run)")
    parser.add_argument("--predictor-iters", type=int, default=12, help="predictor-only rounds")
    parser.add_argument("--num-classes", type=int, default=1203)
    parser.add_argument("--rois", type=int, default=512, help="sampled RoIs per image")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--objects", type=int, default=12, help="ground-truth objects per image")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default=None, help="default: cpu with 1 thread on CPU, else wall"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    global clock, device
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA device; run on a GPU machine")
    clock_name = args.clock or ("cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall")
    if device.type == "cuda" and clock_name == "cpu":
        parser.error("--clock cpu measures host time only; CUDA kernels run asynchronously (use --clock wall)")
    clock = CLOCKS[clock_name]
    wall = time.perf_counter()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device={device} ({where}) clock={clock_name} load average at start={os.getloadavg()}", flush=True)

    cfg = build_cfg(args)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    # A random RPN regresses its anchors into degenerate boxes that NMS collapses to a handful; with zero deltas
    # the proposals are the anchors, ranked by random objectness, so the RoI sampler gets `--rois` per image as
    # with a trained RPN.
    for param in model.proposal_generator.rpn_head.anchor_deltas.parameters():
        torch.nn.init.zeros_(param)
    stock = model.roi_heads.box_predictor  # Detectron2's FastRCNNOutputLayers, built by StandardROIHeads
    predictors = {STOCK: stock}
    for name in args.heads:
        head_cfg = cfg.clone()
        head_cfg.MODEL.LT.BOX_CLASSIFIER = name
        torch.manual_seed(0)
        predictors[name] = build_box_predictor(head_cfg, model.roi_heads.box_head.output_shape).to(device).train()
    names = list(predictors)
    inputs = synthetic_inputs(args)
    optimizers = {}
    for name, predictor in predictors.items():
        model.roi_heads.box_predictor = predictor
        optimizers[name] = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)

    def whole_iteration(name: str) -> None:
        model.roi_heads.box_predictor = predictors[name]
        torch.manual_seed(1)  # identical RPN / RoI sampling for every head
        losses = model(inputs)
        optimizers[name].zero_grad()
        sum(losses.values()).backward()
        optimizers[name].step()

    with EventStorage(0):
        # Inputs of the box branch, computed once: backbone features (leaves that need a gradient, as in
        # training) and the sampled proposals with their ground truth.
        with torch.no_grad():
            torch.manual_seed(1)
            images = model.preprocess_image(inputs)
            features = model.backbone(images.tensor)
            targets = [x["instances"] for x in inputs]
            proposals, _ = model.proposal_generator(images, features, targets)
            proposals = model.roi_heads.label_and_sample_proposals(proposals, targets)
        box_features = {k: v.detach().requires_grad_(True) for k, v in features.items()}
        print(f"sampled RoIs per image: {[len(p) for p in proposals]}", flush=True)

        def box_head_only(name: str) -> None:
            model.roi_heads.box_predictor = predictors[name]
            losses = model.roi_heads._forward_box(box_features, proposals)
            sum(losses.values()).backward()

        with torch.no_grad():
            head_features = model.roi_heads.box_head(
                model.roi_heads.box_pooler(
                    [features[f] for f in model.roi_heads.box_in_features], [p.proposal_boxes for p in proposals]
                )
            )

        def predictor_only(name: str) -> None:
            predictor = predictors[name]
            losses = predictor.losses(predictor(head_features.detach().requires_grad_(True)), proposals)
            sum(losses.values()).backward()

        labels = ("predictor only", "box head only", "whole iteration")
        results: Dict[str, Dict[str, List[float]]] = {label: {n: [] for n in names} for label in labels}
        plan = (
            ("predictor only", predictor_only, args.predictor_iters),
            ("box head only", box_head_only, args.head_iters),
            ("whole iteration", whole_iteration, args.iters),
        )
        for label, fn, rounds in plan:
            fn(STOCK)  # warm-up (allocator, lazy initialisation)
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    results[label][name].append(timed(lambda: fn(name)))  # noqa: B023 (called at once)
            print(f"{label}: {rounds} rounds done at {time.perf_counter() - wall:.0f} s", flush=True)
    model.zero_grad(set_to_none=True)

    lines = [
        f"R50-FPN Mask R-CNN, {args.num_classes} classes, {args.rois} RoIs/img, batch {args.batch}, "
        f"{args.size}px, {where}, torch {torch.__version__}, {clock_name} clock; "
        "ratios = median over rounds of head / stock",
        "",
        "| head | whole iter (s) | whole-iter ratio | box head only (ms) | head-only ratio | predictor only (ms) "
        "| predictor-only ratio | derived whole-iter ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    whole_stock = statistics.median(results["whole iteration"][STOCK])
    predictor_stock = statistics.median(results["predictor only"][STOCK])
    for name in names:
        row = [name]
        for label, unit in (("whole iteration", 1.0), ("box head only", 1000.0), ("predictor only", 1000.0)):
            times, base = results[label][name], results[label][STOCK]
            ratio = statistics.median(t / b for t, b in zip(times, base))
            row += [f"{statistics.median(times) * unit:.3f}", f"{ratio:.3f}x"]
        derived = 1.0 + (statistics.median(results["predictor only"][name]) - predictor_stock) / whole_stock
        row.append(f"{derived:.4f}x")
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    print("\n" + text, end="")
    if args.out:
        atomic_write(args.out, lambda f: f.write(text), binary=False)
    print(f"\ntotal {time.perf_counter() - wall:.0f} s; load average at end={os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
