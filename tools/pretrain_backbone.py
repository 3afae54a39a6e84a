#!/usr/bin/env python
"""Pre-train the lt_shapes demo's narrow ResNet backbone by classifying object crops of a class-balanced split.

The detection papers fine-tune from an ImageNet-classification backbone; no such weights can be downloaded here,
so this is the same regime on the embedded data: a balanced split from the same generator (another seed and
random stream, every class in the same number of images), one window per object centred on it at the detection
scale (no resizing: objects are 16-56 px, the window 64 px), and a classifier over the 30 classes on the backbone's
globally pooled res5 features. Only the backbone (`backbone.bottom_up.*`) is saved; FPN, RPN and the ROI heads start
from random as they do on ImageNet weights. The pretrained demo configs (configs/demo/pretrained/) load it with
MODEL.WEIGHTS.

    python tools/pretrain_backbone.py                         # once, ~5-10 min on 2 cores; cached afterwards
    python tools/pretrain_backbone.py --iters 3 --images-per-class 2 --out /tmp/pt.pth   # smoke run

Deterministic for a fixed thread count: same settings and OMP_NUM_THREADS give the same file (its sha256 is printed
and stored next to it in <out>.json). An existing checkpoint with the same settings is reused unless --force.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import time
from typing import Dict, List, Tuple

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # first, before torch loads: pinned CPU kernels (docs/results.md), sleeping OpenMP threads

from lt_detectron.utils.cli import UserError, run_cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "demo", "lt_shapes_base.yaml")
# MODEL.WEIGHTS of configs/demo/pretrained/*.yaml (relative to the repository root, where `make demo` runs).
DEFAULT_OUT = os.path.join("output", "pretrained", "lt_shapes_narrow_r18_crops.pth")
PREFIX = "backbone.bottom_up."  # the narrow ResNet's place inside Detectron2's FPN backbone


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="detection config whose backbone is pre-trained")
    p.add_argument("--out", default=DEFAULT_OUT, help="checkpoint path (relative: to the repository root)")
    p.add_argument("--seed", type=int, default=1000, help="data and training seed (the demo's data uses 0)")
    p.add_argument("--images-per-class", type=int, default=120, help="balanced split: images holding each class")
    p.add_argument("--window", type=int, default=64, help="crop side in pixels, at the detection scale")
    p.add_argument("--shift", type=int, default=4, help="random translation of the window, pixels (augmentation)")
    p.add_argument("--iters", type=int, default=800)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--holdout", type=float, default=0.1, help="share of each class's crops held out for accuracy")
    p.add_argument("--force", action="store_true", help="retrain even if a checkpoint with these settings exists")
    p.add_argument("--debug", action="store_true", help="show the traceback of a user error (as LT_DEBUG=1)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Counts and fractions checked before any work (a zero --iters would save an untrained backbone)."""
    least = {"iters": 1, "batch": 1, "images_per_class": 1, "window": 1, "shift": 0}
    for key, low in least.items():
        if getattr(args, key) < low:
            flag = "--" + key.replace("_", "-")
            raise UserError(
                f"{flag} {getattr(args, key)}: must be at least {low}; nothing was run. Fix: {flag} {low}+."
            )
    if not 0 <= args.holdout < 1:
        raise UserError(f"--holdout {args.holdout}: must be in [0, 1); nothing was run. Fix: e.g. --holdout 0.1.")
    if not os.path.isfile(args.config):
        raise UserError(f"--config {args.config}: no such file. Fix: pass a detection config, e.g. {DEFAULT_CONFIG}.")
    if os.path.isdir(_resolve(args.out)):
        raise UserError(f"--out {args.out} is a folder. Fix: pass a file path ending in .pth.")


def settings_of(args: argparse.Namespace) -> Dict[str, object]:
    """What determines the checkpoint (besides code and libraries): compared to reuse a cached one."""
    keys = ("seed", "images_per_class", "window", "shift", "iters", "batch", "lr", "weight_decay", "holdout")
    return {"config": os.path.relpath(os.path.abspath(args.config), REPO), **{k: getattr(args, k) for k in keys}}


# ------------------------------------------------------------------------------------------------------- data


def object_crops(seed: int, images_per_class: int, window: int, shift: int, pixel_format: str = "BGR"):
    """(crops uint8 [N, 3, window + 2 shift, same], labels int64 [N]) with exactly the same N / C per class.

    One crop per object instance of the balanced split, centred on its visible mask's box, from the image padded
    by reflection; classes with more instances (repeats) are cut to the smallest class's count, in image order.
    """
    import cv2
    import numpy as np
    import torch

    from lt_detectron.data.lt_shapes import category_names, plan_balanced, render_balanced

    side = window + 2 * shift
    half = side // 2
    per_class: List[List[np.ndarray]] = [[] for _ in category_names()]
    plan = plan_balanced(images_per_class, seed=seed)
    start = time.time()
    for k, (img, objects) in enumerate(render_balanced(plan, seed=seed)):
        if (k + 1) % 500 == 0:  # rendering takes tens of seconds on a loaded machine: show it is moving
            eta = (time.time() - start) / (k + 1) * (len(plan) - k - 1)
            print(f"[pretrain] rendered {k + 1}/{len(plan)} images of the balanced split (ETA {eta:.0f} s)", flush=True)
        if pixel_format == "BGR":
            img = img[:, :, ::-1]
        padded = cv2.copyMakeBorder(np.ascontiguousarray(img), half, half, half, half, cv2.BORDER_REFLECT_101)
        for class_index, mask in objects:
            ys, xs = np.nonzero(mask)
            cy = (int(ys.min()) + int(ys.max()) + 1) // 2 + half
            cx = (int(xs.min()) + int(xs.max()) + 1) // 2 + half
            per_class[class_index].append(padded[cy - half : cy - half + side, cx - half : cx - half + side])
    n = min(len(c) for c in per_class)
    crops = np.stack([crop for c in per_class for crop in c[:n]])
    labels = np.repeat(np.arange(len(per_class)), n)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def split_holdout(labels, holdout: float, generator) -> Tuple[object, object]:
    """Indices (train, held out): the same share of every class held out, chosen by `generator`."""
    import torch

    train, held = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = int(round(holdout * len(idx)))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train), torch.cat(held)


# ------------------------------------------------------------------------------------------------------ model


class CropClassifier:
    """The detection config's bottom-up backbone + global average pool of its last feature + a linear classifier."""

    def __init__(self, cfg, num_classes: int):
        import torch
        from detectron2.layers import ShapeSpec

        from lt_detectron.modeling.backbone import build_narrow_resnet_backbone

        self.backbone = build_narrow_resnet_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        self.feature = self.backbone._out_features[-1]
        channels = self.backbone.output_shape()[self.feature].channels
        self.head = torch.nn.Linear(channels, num_classes)
        self.mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=torch.float32).view(1, -1, 1, 1)

    def parameters(self):
        return list(self.backbone.parameters()) + list(self.head.parameters())

    def train(self, mode: bool = True) -> None:
        self.backbone.train(mode)
        self.head.train(mode)

    def __call__(self, images_uint8):
        x = (images_uint8.float() - self.mean) / self.std
        return self.head(self.backbone(x)[self.feature].mean(dim=(2, 3)))


def _batch(crops, idx, window: int, shift: int, generator, augment: bool):
    """Windows of `window` px: random shift and horizontal flip when augmenting, the centre otherwise."""
    import torch

    if not augment:
        return crops[idx, :, shift : shift + window, shift : shift + window]
    offsets = torch.randint(0, 2 * shift + 1, (len(idx), 2), generator=generator)
    flips = torch.rand(len(idx), generator=generator) < 0.5
    out = []
    for i, (dy, dx), flip in zip(idx.tolist(), offsets.tolist(), flips.tolist()):
        crop = crops[i, :, dy : dy + window, dx : dx + window]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def pretrain(args: argparse.Namespace) -> Dict[str, object]:
    """Train and return the checkpoint dict (model state under `PREFIX` + metadata without timings, so the file's
    bytes depend only on the settings, the code and the libraries)."""
    import torch

    from lt_detectron.engine import build_cfg

    cfg = build_cfg(args.config)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    crops, labels = object_crops(args.seed, args.images_per_class, args.window, args.shift, cfg.INPUT.FORMAT)
    num_classes = int(labels.max()) + 1
    train_idx, held_idx = split_holdout(labels, args.holdout, gen)
    print(
        f"[pretrain] {len(labels)} crops ({len(labels) // num_classes} per class, {len(held_idx)} held out) "
        f"in {time.time() - t0:.0f} s",
        flush=True,
    )
    model = CropClassifier(cfg, num_classes)
    params = model.parameters()
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]  # norms and biases
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
    )
    warmup = max(1, min(100, args.iters // 10))

    def lr_at(it: int) -> float:  # linear warm-up, then cosine to zero
        if it < warmup:
            return args.lr * (it + 1) / warmup
        return 0.5 * args.lr * (1 + math.cos(math.pi * (it - warmup) / max(1, args.iters - warmup)))

    model.train(True)
    order = torch.empty(0, dtype=torch.long)
    t1 = time.time()
    for it in range(args.iters):
        if len(order) < args.batch:
            order = torch.cat([order, train_idx[torch.randperm(len(train_idx), generator=gen)]])
        idx, order = order[: args.batch], order[args.batch :]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        loss = torch.nn.functional.cross_entropy(
            model(_batch(crops, idx, args.window, args.shift, gen, augment=True)), labels[idx]
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pre-training diverged at iteration {it} (loss {loss.item()}); lower --lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (it + 1) % 100 == 0 or it + 1 == args.iters:
            rate = (time.time() - t1) / (it + 1)
            print(
                f"[pretrain] iter {it + 1}/{args.iters} loss {loss.item():.4f} lr {lr_at(it):.4f} "
                f"({rate:.2f} s/iter, ETA {rate * (args.iters - it - 1) / 60:.1f} min)",
                flush=True,
            )
    model.train(False)
    accs = {}
    with torch.no_grad():
        for name, idx in (("train", train_idx), ("held_out", held_idx)):
            correct = 0
            for start in range(0, len(idx), 256):
                part = idx[start : start + 256]
                logits = model(_batch(crops, part, args.window, args.shift, None, augment=False))
                correct += int((logits.argmax(1) == labels[part]).sum())
            accs[name] = round(100.0 * correct / max(1, len(idx)), 2)
    meta = {
        "settings": settings_of(args),
        "num_crops": int(len(labels)),
        "accuracy_percent": accs,
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),  # a plain str: TorchVersion is not loadable with weights_only=True
    }
    print(f"[pretrain] trained in {(time.time() - t1) / 60:.1f} min", flush=True)
    state = {PREFIX + k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    return {"model": state, "__author__": "lt_detectron tools/pretrain_backbone.py", "pretrain": meta}


def _resolve(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def cached(out: str, settings: Dict[str, object]) -> bool:
    """True if `out` exists and its sidecar json records the same settings and the file's sha256."""
    sidecar = out + ".json"
    if not (os.path.isfile(out) and os.path.isfile(sidecar)):
        return False
    with open(sidecar) as f:
        meta = json.load(f)
    return meta.get("settings") == settings and meta.get("sha256") == _sha256(out)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    """Exit status 0, or 2 after a user error (one line `error: ...`; LT_DEBUG=1 or --debug for the traceback)."""
    args = parse_args(argv)
    return run_cli(lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    check_args(args)
    out = _resolve(args.out)
    settings = settings_of(args)
    if not args.force and cached(out, settings):
        print(f"[pretrain] {out} exists with these settings (sha256 {_sha256(out)[:16]}); --force to retrain")
        return 0
    import torch

    from lt_detectron.utils.io import atomic_write, write_json_atomic

    print(f"[pretrain] torch threads {torch.get_num_threads()}; settings {json.dumps(settings)}", flush=True)
    start = time.time()
    checkpoint = pretrain(args)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(out, lambda f: f.write(buffer.getvalue()))
    meta = dict(checkpoint["pretrain"], sha256=_sha256(out), total_seconds=round(time.time() - start, 1))
    write_json_atomic(meta, out + ".json", indent=2)
    acc = meta["accuracy_percent"]
    print(
        f"[pretrain] wrote {out} (sha256 {meta['sha256'][:16]}): crop accuracy train {acc['train']} %, "
        f"held out {acc['held_out']} %; {meta['total_seconds'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
