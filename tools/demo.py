#!/usr/bin/env python
"""`make demo`: the long-tail story in one command. Generate lt_shapes if absent, train the from-scratch softmax
baseline on CPU, then evaluate the same weights twice in one inference pass: as trained, and with post-hoc
PC Softmax (the training prior divided out of the scores; Hong et al., CVPR 2021). Prints one table (AP, APr, APc,
APf per row and the change), writes demo_results.json and a figure of per-class AP against training images for
both rows (demo_ap_vs_train_images.png) into the output folder. Exits non-zero on failure.

    python tools/demo.py                                  # the full demo (times: benchmarks/results/lt_shapes_demo.md)
    python tools/demo.py --max-iter 20 --output /tmp/smoke  # a quick smoke run
    python tools/demo.py --config configs/demo/lt_shapes_lda.yaml --output output/demo_lda MODEL.LT.LDA.GAMMA 2.0

CPU kernels are pinned to AVX2 so the table is reproduced on other x86 CPUs (LT_NATIVE_ISA=1: native kernels;
docs/results.md). The post-hoc row needs the stock softmax box classifier; other heads get one row.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
import time
import traceback
from typing import Dict, List, Mapping, Optional, Tuple

from lt_detectron.utils.numerics import numerics_info, pin_cpu_numerics

pin_cpu_numerics()  # before torch loads: pinned CPU kernels (docs/results.md), sleeping OpenMP threads

from lt_detectron.evaluation.report import DEMO_METRICS as METRICS  # noqa: E402
from lt_detectron.evaluation.report import format_lvis_table  # noqa: E402, F401  (the demo's table; also used by tests)
from lt_detectron.utils.cli import UserError, run_cli  # noqa: E402
from lt_detectron.utils.io import save_figure_atomic, write_json_atomic  # noqa: E402
from lt_detectron.utils.provenance import git_commit  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="demo config (default: %(default)s)")
    parser.add_argument("--output", default=None, help="output folder (default: the config's OUTPUT_DIR)")
    parser.add_argument("--max-iter", type=int, default=None, help="override SOLVER.MAX_ITER (>= 1; for a smoke run)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error (as LT_DEBUG=1)")
    parser.add_argument(
        "--posthoc",
        default="pc_softmax",
        choices=("pc_softmax", "none"),
        help="second row: the same weights with this post-hoc box classifier (default: %(default)s)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="trailing KEY VALUE config overrides")
    return parser.parse_args(argv)


def _check_results(results) -> dict:
    if not results or "bbox" not in results:
        raise RuntimeError(
            f"evaluation returned no bbox metrics ({results!r}); check DATASETS.TEST and the inference log above."
        )
    for task, metrics in results.items():
        for name in METRICS:
            value = metrics.get(name)
            if value is None or not math.isfinite(value):
                if name in ("APr", "APc", "APf") and value is not None:
                    continue  # NaN when a group has no class in the val split: reported, not fatal
                raise RuntimeError(f"evaluation result {task}/{name} is {value!r}; the run did not produce a metric.")
    return results


def _write_json_atomic(path: str, obj) -> None:
    write_json_atomic(obj, path, indent=2)


def _resolve_weights(cfg) -> None:
    """A relative MODEL.WEIGHTS (the pre-trained demo configs) is looked up in the working folder, then the repo."""
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights or os.path.isabs(weights) or os.path.isfile(weights):
        return
    if not os.path.isfile(os.path.join(REPO, weights)):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS {weights!r} exists neither in {os.getcwd()} nor in {REPO}; the pre-trained demo configs "
            "(configs/demo/pretrained/) need `python tools/pretrain_backbone.py` once (docs/results.md)."
        )
    cfg.MODEL.WEIGHTS = os.path.join(REPO, weights)


# ---------------------------------------------------------------------------------------- two rows, one pass

AS_TRAINED = "softmax, as trained"
POSTHOC_LABELS = {"pc_softmax": "PC Softmax, post hoc (same weights)"}
TABLE_METRICS = ("AP", "APr", "APc", "APf")


def posthoc_predictor(cfg, model, name: str):
    """The box predictor `name` with the trained predictor's weights, or None when the model's head is not the stock
    softmax (a post-hoc prior correction of another head's scores would not be the published method)."""
    from detectron2.modeling.roi_heads import StandardROIHeads
    from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

    from lt_detectron.modeling import StockBoxPredictor
    from lt_detectron.modeling.roi_heads import build_box_predictor

    heads = getattr(model, "roi_heads", None)
    trained = getattr(heads, "box_predictor", None)
    if not isinstance(heads, StandardROIHeads) or type(trained) not in (FastRCNNOutputLayers, StockBoxPredictor):
        return None
    if trained.use_sigmoid_ce or getattr(model, "proposal_generator", None) is None:  # see _two_row_model
        return None
    pc_cfg = cfg.clone()
    pc_cfg.defrost()
    pc_cfg.MODEL.ROI_HEADS.NAME = "LTROIHeads"
    pc_cfg.MODEL.LT.BOX_CLASSIFIER = name
    predictor = build_box_predictor(pc_cfg, heads.box_head.output_shape)  # what LTROIHeads would build
    predictor.load_state_dict(trained.state_dict())  # same parameters; the priors are (non-persistent) buffers
    return predictor.to(trained.cls_score.weight.device).eval()


def paste_masks(masks, boxes, image_shape: Tuple[int, int], threshold: float = 0.5):
    """Detectron2's CPU `paste_masks_in_image` in one grid_sample instead of one call per mask.

    Detectron2 pastes each mask alone on CPU, sampling only inside its box's integer bounds; 300 masks per image made
    that 57 % of the demo's inference time. Here every mask gets a grid as large as the largest such region, filled
    by the same elementwise float32 operations, so each pixel inside a mask's own region gets the same bilinear sample
    and the same bit; the rest is discarded. tests/test_demo_two_rows.py checks the equality against Detectron2.
    masks: [N, M, M] probabilities, boxes: [N, 4] (x0, y0, x1, y1); returns bool [N, H, W].
    """
    import torch
    from torch.nn import functional as F

    n, (img_h, img_w) = len(masks), image_shape
    out = torch.zeros(n, img_h, img_w, dtype=torch.bool, device=masks.device)
    if n == 0:
        return out
    x0_int = torch.clamp(boxes[:, 0].floor() - 1, min=0).to(torch.int32)
    y0_int = torch.clamp(boxes[:, 1].floor() - 1, min=0).to(torch.int32)
    x1_int = torch.clamp(boxes[:, 2].ceil() + 1, max=img_w).to(torch.int32)
    y1_int = torch.clamp(boxes[:, 3].ceil() + 1, max=img_h).to(torch.int32)
    hs, ws = (y1_int - y0_int).tolist(), (x1_int - x0_int).tolist()
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    steps_y = torch.arange(max(hs), dtype=torch.int32, device=boxes.device)
    steps_x = torch.arange(max(ws), dtype=torch.int32, device=boxes.device)
    img_y = (y0_int[:, None] + steps_y).to(torch.float32) + 0.5  # = arange(y0_int, y1_int) + 0.5, padded
    img_x = (x0_int[:, None] + steps_x).to(torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    gx = img_x[:, None, :].expand(n, img_y.size(1), img_x.size(1))
    gy = img_y[:, :, None].expand(n, img_y.size(1), img_x.size(1))
    sampled = F.grid_sample(masks[:, None].float(), torch.stack([gx, gy], dim=3), align_corners=False)[:, 0]
    sampled = sampled >= threshold
    for i, (ya, xa, h, w) in enumerate(zip(y0_int.tolist(), x0_int.tolist(), hs, ws)):
        out[i, ya : ya + h, xa : xa + w] = sampled[i, :h, :w]
    return out


def _postprocess(instances, batched_inputs: List[dict], image_sizes) -> List[dict]:
    """GeneralizedRCNN._postprocess (Detectron2's detector_postprocess per image) with `paste_masks`."""
    import torch
    from detectron2.modeling.postprocessing import detector_postprocess

    results = []
    for inst, inputs, size in zip(instances, batched_inputs, image_sizes):
        masks = inst.get("pred_masks") if inst.has("pred_masks") else None
        if masks is not None:
            inst.remove("pred_masks")
        inst.set("demo_index", torch.arange(len(inst), device=inst.pred_boxes.device))  # survives its filtering
        r = detector_postprocess(inst, inputs.get("height", size[0]), inputs.get("width", size[1]))
        if masks is not None:
            r.pred_masks = paste_masks(masks[r.demo_index, 0], r.pred_boxes.tensor, r.image_size)
        r.remove("demo_index")
        results.append({"instances": r})
    return results


def _two_row_model(model, posthoc):
    """A module whose forward is GeneralizedRCNN.inference up to the box head's logits, then Detectron2's
    FastRCNNOutputLayers.inference, mask head and post-processing once per score set: the backbone, RPN and box
    head run once for both rows. Returns [(as trained, post hoc)] per image."""
    import torch
    from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference

    class TwoRows(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.posthoc = model, posthoc

        def forward(self, batched_inputs: List[dict]) -> List[Tuple[dict, dict]]:
            m = self.model
            images = m.preprocess_image(batched_inputs)
            features = m.backbone(images.tensor)
            proposals, _ = m.proposal_generator(images, features, None)
            heads = m.roi_heads
            box_features = heads.box_pooler(
                [features[f] for f in heads.box_in_features], [p.proposal_boxes for p in proposals]
            )
            predictions = heads.box_predictor(heads.box_head(box_features))
            boxes = heads.box_predictor.predict_boxes(predictions, proposals)
            shapes = [p.image_size for p in proposals]
            rows = []
            for predictor in (heads.box_predictor, self.posthoc):
                scores = predictor.predict_probs(predictions, proposals)
                instances, _ = fast_rcnn_inference(
                    boxes, scores, shapes, predictor.test_score_thresh, predictor.test_nms_thresh,
                    predictor.test_topk_per_image,
                )  # fmt: skip
                instances = heads.forward_with_given_boxes(features, instances)
                rows.append(_postprocess(instances, batched_inputs, images.image_sizes))
            return list(zip(*rows))

    return TwoRows()


def _pair_evaluator(first, second):
    """Feeds the first output of each image to `first`, the second to `second`; evaluate() returns both."""
    from detectron2.evaluation import DatasetEvaluator

    class Pair(DatasetEvaluator):
        def reset(self):
            first.reset()
            second.reset()

        def process(self, inputs, outputs):
            first.process(inputs, [o[0] for o in outputs])
            second.process(inputs, [o[1] for o in outputs])

        def evaluate(self):
            return {"trained": first.evaluate(), "posthoc": second.evaluate()}

    return Pair()


def evaluate_two_rows(cfg, model, posthoc, posthoc_name: str) -> Tuple[dict, dict]:
    """(as-trained results, post-hoc results) on DATASETS.TEST, like DefaultTrainer.test (one dataset: its metrics
    directly). The as-trained row is written where a plain run writes it; the post-hoc one beside it."""
    from detectron2.evaluation import inference_on_dataset

    from lt_detectron.engine import LTTrainer

    trained, post = {}, {}
    for name in cfg.DATASETS.TEST:
        loader = LTTrainer.build_test_loader(cfg, name)
        first = LTTrainer.build_evaluator(cfg, name)
        second = LTTrainer.build_evaluator(cfg, name, posthoc_folder(cfg, name, posthoc_name))
        both = inference_on_dataset(_two_row_model(model, posthoc), loader, _pair_evaluator(first, second))
        trained[name], post[name] = both["trained"], both["posthoc"]
    if len(cfg.DATASETS.TEST) == 1:
        return trained[cfg.DATASETS.TEST[0]], post[cfg.DATASETS.TEST[0]]
    return trained, post


def posthoc_folder(cfg, dataset: str, posthoc_name: str) -> str:
    return os.path.join(cfg.OUTPUT_DIR, "inference", f"{dataset}_{posthoc_name}")


def make_trainer(cfg, posthoc_name: Optional[str]):
    """LTTrainer whose final evaluation (Detectron2's EvalHook) also scores the post-hoc row when it applies."""
    from lt_detectron.engine import LTTrainer

    class DemoTrainer(LTTrainer):
        posthoc_results: Optional[dict] = None
        eval_seconds = 0.0

        def _test_and_keep_results(self):
            start = time.time()
            predictor = posthoc_predictor(self.cfg, self.model, posthoc_name) if posthoc_name else None
            if predictor is None:
                super()._test_and_keep_results()
            else:
                self.last_eval_results, self.posthoc_results = evaluate_two_rows(
                    self.cfg, self.model, predictor, posthoc_name
                )
            self.eval_seconds += time.time() - start
            return self.last_eval_results

    return DemoTrainer(cfg)


# -------------------------------------------------------------------------------------------- table, figure


def format_rows_table(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One markdown table: bbox and segm AP / APr / APc / APf per row, then the change of the last row over the
    first (when there are two)."""
    tasks = [t for t in ("bbox", "segm") if all(t in r for r in rows.values())]
    header = ["evaluation"] + [f"{t} {m}" for t in tasks for m in TABLE_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label, res in rows.items():
        lines.append(
            "| " + " | ".join([label] + [f"{res[t].get(m, math.nan):.1f}" for t in tasks for m in TABLE_METRICS]) + " |"
        )
    if len(rows) == 2:
        (_, a), (_, b) = rows.items()
        cells = [f"{b[t].get(m, math.nan) - a[t].get(m, math.nan):+.1f}" for t in tasks for m in TABLE_METRICS]
        lines.append("| " + " | ".join(["change"] + cells) + " |")
    return "\n".join(lines)


def _read_per_class(path: str) -> List[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_rows_vs_train_images(csvs: Mapping[str, str], path: str, key: str = "ap_bbox") -> Optional[str]:
    """Per-class AP (`key` of the evaluator's lvis_per_class.csv) against training images for each row: log x,
    rare / common / frequent bands, one marker and trend line per row, a thin line joining a class's two points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series: Dict[str, Dict[str, Tuple[float, float]]] = {}
    for label, csv_path in csvs.items():
        points = {}
        for r in _read_per_class(csv_path):
            if r.get(key) not in ("", None) and r.get("train_image_count") not in ("", None):
                if float(r["train_image_count"]) > 0:
                    points[r["id"]] = (float(r["train_image_count"]), float(r[key]))
        series[label] = points
    if not any(series.values()):
        return None
    xs = np.array([x for pts in series.values() for x, _ in pts.values()])
    lo, hi = min(xs.min(), 1.0) / 1.5, max(xs.max(), 1000.0) * 1.5
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (a, b), band, color in (((lo, 10.5), "rare", "#f4cccc"), ((10.5, 100.5), "common", "#fff2cc"),
                                ((100.5, hi), "frequent", "#d9ead3")):  # fmt: skip
        ax.axvspan(a, b, color=color, alpha=0.6, zorder=0)
        ax.text(math.sqrt(a * b), 0.98, band, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8)
    labels = list(series)
    if len(labels) == 2:  # how each class moved from the first row to the second
        first, second = series[labels[0]], series[labels[1]]
        for cid in first.keys() & second.keys():
            ax.plot([first[cid][0]] * 2, [first[cid][1], second[cid][1]], color="0.55", lw=0.8, zorder=1)
    styles = [("o", "#1f4e79", "none"), ("^", "#c55a11", "#c55a11")]
    for (label, pts), (marker, color, face) in zip(series.items(), styles):
        x = np.array([p[0] for p in pts.values()])
        y = np.array([p[1] for p in pts.values()])
        ax.scatter(x, y, s=22, marker=marker, edgecolors=color, facecolors=face, zorder=3, label=label)
        if len(np.unique(x)) > 1:
            slope, intercept = np.polyfit(np.log10(x), y, 1)
            grid = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
            ax.plot(grid, intercept + slope * np.log10(grid), "--", color=color, lw=1.3, zorder=2,
                    label=f"trend: {slope:+.1f} AP per 10x images")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ys = [y for pts in series.values() for _, y in pts.values()]
    ax.set_ylim(-3, max(ys) * 1.1 + 3)  # AP >= 0: a trend line below zero is cut, not the scale stretched
    ax.set_xlabel("training images of the class (log)")
    ax.set_ylabel(f"per-class {'mask' if key == 'ap_segm' else 'box'} AP")
    ax.set_title("Per-class AP vs training images: the same weights, two inference rules", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.93), fontsize=8, framealpha=0.85)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


# ---------------------------------------------------------------------------------------------------- demo


def run_demo(args: argparse.Namespace) -> dict:
    start = time.time()
    import torch
    from detectron2.engine import default_setup

    from lt_detectron.data import default_lt_shapes_root, ensure_lt_shapes, register_lt_shapes
    from lt_detectron.engine import check_cfg_datasets
    from lt_detectron.engine.run_guard import checked_cfg, dataset_errors
    from lt_detectron.engine.run_logging import plain_when_redirected, setup_run_logging

    if args.max_iter is not None and args.max_iter < 1:
        raise UserError(
            f"--max-iter {args.max_iter}: the demo trains at least one iteration; nothing was run. Fix: --max-iter 20 "
            "for a smoke run, or leave it out for the config's SOLVER.MAX_ITER."
        )
    opts = list(args.opts)
    if args.output:
        opts += ["OUTPUT_DIR", args.output]
    if args.max_iter is not None:
        opts += ["SOLVER.MAX_ITER", str(args.max_iter)]
    cfg = checked_cfg(args.config, opts)
    with dataset_errors():  # a missing pre-trained backbone: a user error naming the command that makes it
        _resolve_weights(cfg)

    root = cfg.DATASETS.LT_SHAPES_DIR or default_lt_shapes_root()
    print(f"[demo] dataset: lt_shapes in {root} (generated now if absent, ~15 s) ...", flush=True)
    t0 = time.time()
    with dataset_errors():
        ensure_lt_shapes(root)
        register_lt_shapes(root)
        check_cfg_datasets(cfg)  # annotation files valid before any training starts
    dataset_s = time.time() - t0
    print(f"[demo] dataset ready ({dataset_s:.0f} s)", flush=True)

    cfg.freeze()
    setup_args = argparse.Namespace(config_file=args.config, eval_only=False, opts=opts)
    with plain_when_redirected():  # no escape codes in a redirected log
        default_setup(cfg, setup_args)  # output dir, log file, config dump, seed
    setup_run_logging(cfg.OUTPUT_DIR)  # the fast evaluator's table and the paths of its files
    numerics = numerics_info()
    print(
        f"[demo] training {cfg.SOLVER.MAX_ITER} iterations into {cfg.OUTPUT_DIR} "
        f"(torch threads: {torch.get_num_threads()}; CPU kernels: {numerics['isa']}; "
        "progress every 20 iterations with ETA, then inference progress with ETA)",
        flush=True,
    )
    posthoc_name = None if args.posthoc == "none" else args.posthoc
    t0 = time.time()
    trainer = make_trainer(cfg, posthoc_name)
    trainer.resume_or_load(resume=False)
    results = _check_results(trainer.train())  # evaluates DATASETS.TEST after the last iteration
    train_and_eval_s = time.time() - t0

    rows = {AS_TRAINED: results}
    if trainer.posthoc_results is not None:
        rows[POSTHOC_LABELS.get(posthoc_name, posthoc_name)] = _check_results(trainer.posthoc_results)
    elif posthoc_name:
        print(f"[demo] no post-hoc row: {args.config} does not train the stock softmax box classifier", flush=True)
    table = format_rows_table(rows)
    figure = None
    if len(rows) == 2 and len(cfg.DATASETS.TEST) == 1:
        dataset = cfg.DATASETS.TEST[0]
        csvs = {
            AS_TRAINED: os.path.join(cfg.OUTPUT_DIR, "inference", dataset, "lvis_per_class.csv"),
            list(rows)[1]: os.path.join(posthoc_folder(cfg, dataset, posthoc_name), "lvis_per_class.csv"),
        }
        if all(os.path.isfile(p) for p in csvs.values()):  # written by the fast evaluator (TEST.LT_EVALUATOR "fast")
            figure = plot_rows_vs_train_images(csvs, os.path.join(cfg.OUTPUT_DIR, "demo_ap_vs_train_images.png"))

    total_s = time.time() - start
    summary = {
        "config": os.path.relpath(args.config, REPO),
        "max_iter": cfg.SOLVER.MAX_ITER,
        "results": results,  # as trained (what the heads sweep reads)
        "posthoc": {"box_classifier": posthoc_name, "results": trainer.posthoc_results} if len(rows) == 2 else None,
        "table": table,
        "figure": figure and os.path.relpath(figure, cfg.OUTPUT_DIR),
        "seconds": {
            "dataset": round(dataset_s, 1),
            "training": round(train_and_eval_s - trainer.eval_seconds, 1),
            "inference and evaluation": round(trainer.eval_seconds, 1),
            "total": round(total_s, 1),
        },
        "train_and_eval_seconds": round(train_and_eval_s, 1),
        "total_seconds": round(total_s, 1),
        "torch_threads": torch.get_num_threads(),
        "numerics": numerics,
        "code": git_commit(REPO),  # the code that made these numbers
    }
    _write_json_atomic(os.path.join(cfg.OUTPUT_DIR, "demo_results.json"), summary)
    print(
        f"\nLVIS-style results on {', '.join(cfg.DATASETS.TEST)} ({os.path.relpath(args.config, REPO)}, "
        f"{cfg.SOLVER.MAX_ITER} iterations; CPU kernels {numerics['isa']}):\n\n{table}"
    )
    if len(rows) == 2:
        (_, a), (_, b) = rows.items()
        before, after = a["bbox"]["APr"], b["bbox"]["APr"]
        print(
            f"\nbbox APr {before:.1f} -> {after:.1f} ({after - before:+.1f}) from the same weights: the trained scores"
        )
        print("carry the training set's class prior; dividing it out (PC Softmax) changes the ranking, not the model.")
    print(
        f"\ntotal wall time: {total_s / 60:.1f} min ("
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in summary["seconds"].items() if k != "total")
        + ")"
    )
    print(f"results: {os.path.join(cfg.OUTPUT_DIR, 'demo_results.json')}")
    if figure:
        print(f"figure (per-class AP vs training images, both rows): {figure}")
    return summary


def main(argv=None) -> int:
    """Exit status: 0, 2 after a user error (one line `error: ...`; LT_DEBUG=1 or --debug for its traceback), 1 after
    any other failure (traceback), 130 when interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        return run_cli(lambda: run_demo(args), debug=args.debug)
    except KeyboardInterrupt:
        print("[demo] interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # report, then fail the make target
        traceback.print_exc()
        print(f"[demo] FAILED: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
