#!/usr/bin/env python
"""Evaluate one trained detector at several NorCal gamma values without re-running the network for each.

The backbone, proposals and box head run once over the test set; each image's box-head scores (C+1 probabilities,
before any calibration) and class-specific boxes are kept. Each gamma then calibrates the kept scores
(`lt_detectron.modeling.NorCal`: foreground scores / n_c^gamma, background kept, renormalised), runs Detectron2's
per-class NMS (`fast_rcnn_inference_single_image`) and the fast LVIS evaluator. Box AP only: the mask head would need
the features again for every gamma. gamma 0 is the model as trained.

Choose gamma on held-out data, not on the split you report: `--gt/--image-root` evaluate on any LVIS-format json (for
lt_shapes, the validation split of a dataset generated with another seed:
`python -m lt_detectron.data.lt_shapes --out /tmp/lt_shapes_tune --seed 1`); its categories' r/c/f groups are set
from the model's training sets (DATASETS.TRAIN), so APr/APc/APf group the classes as the model was trained.

    python tools/calibration_sweep.py --config-file configs/demo/pretrained/lt_shapes_baseline.yaml \
        --weights output/demo_pretrained_baseline/model_final.pth --gammas 0 0.25 0.5 0.75 1 1.5 \
        --gt /tmp/lt_shapes_tune/lt_shapes_val.json --image-root /tmp/lt_shapes_tune/images/ --output /tmp/norcal

Prints AP / APr / APc / APf per gamma; writes `norcal_sweep.json` and `norcal_sweep.png` (AP and APr against gamma)
under --output. Memory: the kept scores and boxes of every image (fine for lt_shapes; for LVIS val, --max-images).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Sequence

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # first, before torch loads: pinned CPU kernels (docs/results.md), sleeping OpenMP threads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNE_DATASET = "lt_calibration_sweep"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="the model's training config")
    p.add_argument("--weights", required=True, help="checkpoint to evaluate (e.g. model_final.pth)")
    p.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    p.add_argument("--gt", default="", help="LVIS-format json to evaluate on (default: the config's DATASETS.TEST[0])")
    p.add_argument("--image-root", default="", help="with --gt: the folder its file_name / coco_url paths start in")
    p.add_argument("--output", default="", help="folder for norcal_sweep.json / .png (default: next to --weights)")
    p.add_argument("--max-images", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    if any(g < 0 for g in args.gammas):
        p.error(f"--gammas must be >= 0; got {args.gammas}")
    if not os.path.isfile(args.weights):
        p.error(f"--weights {args.weights} does not exist")
    if bool(args.gt) != bool(args.image_root):
        p.error("--gt and --image-root go together")
    if args.gt and not os.path.isfile(args.gt):
        p.error(f"--gt {args.gt} does not exist")
    if args.max_images < 0:
        p.error("--max-images must be >= 0")
    return args


def regroup_by_training_frequency(gt: dict, cfg) -> None:
    """Set the categories' LVIS frequency groups (and image counts) from the model's training sets, in place.

    APr/APc/APf group classes by their training image count; a held-out json generated or split elsewhere may carry
    another dataset's groups (lt_shapes generated with another seed draws other rare classes).
    """
    from lt_detectron.data.stats import class_counts, frequency_groups

    image_counts = class_counts(tuple(cfg.DATASETS.TRAIN), source="image_count")
    categories = sorted(gt["categories"], key=lambda c: c["id"])
    if len(categories) != len(image_counts):
        sys.exit(f"error: --gt has {len(categories)} categories but the training sets have {len(image_counts)}.")
    for category, count, group in zip(categories, image_counts, frequency_groups(image_counts)):
        category["image_count"], category["frequency"] = int(count), str(group)


def collect_scores(model, loader, max_images: int) -> List[dict]:
    """Per image: class-specific boxes, uncalibrated C+1 probabilities, the sizes and the image id."""
    import torch

    heads = model.roi_heads
    predictor = heads.box_predictor
    kept, start = [], time.time()
    total = len(loader) if max_images == 0 else min(max_images, len(loader))
    with torch.no_grad():
        for index, inputs in enumerate(loader):
            if index == total:
                break
            images = model.preprocess_image(inputs)
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, None)
            level_features = [features[f] for f in heads.box_in_features]
            box_features = heads.box_head(heads.box_pooler(level_features, [p.proposal_boxes for p in proposals]))
            predictions = predictor(box_features)
            kept.append(
                {
                    "boxes": predictor.predict_boxes(predictions, proposals)[0],
                    "probs": predictor.predict_probs(predictions, proposals)[0],
                    "image_size": images.image_sizes[0],
                    "height": inputs[0].get("height", images.image_sizes[0][0]),
                    "width": inputs[0].get("width", images.image_sizes[0][1]),
                    "image_id": inputs[0]["image_id"],
                }
            )
            if (index + 1) % 50 == 0 or index + 1 == total:
                rate = (time.time() - start) / (index + 1)
                print(f"[calibration] {index + 1}/{total} images, ETA {rate * (total - index - 1):.0f} s", flush=True)
    return kept


def detections_at(kept: List[dict], calibration, predictor, to_dataset_id) -> List[dict]:
    """LVIS results json records of every kept image, scores through `calibration`."""
    from detectron2.evaluation.coco_evaluation import instances_to_coco_json
    from detectron2.modeling.postprocessing import detector_postprocess
    from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image

    results = []
    for image in kept:
        scores = calibration(image["probs"])
        instances, _ = fast_rcnn_inference_single_image(
            image["boxes"],
            scores,
            image["image_size"],
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        instances = detector_postprocess(instances, image["height"], image["width"])
        for record in instances_to_coco_json(instances.to("cpu"), image["image_id"]):
            record["category_id"] = to_dataset_id(record["category_id"])
            results.append(record)
    return results


def plot(rows: List[dict], path: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lt_detectron.utils.io import save_figure_atomic

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    gammas = [r["gamma"] for r in rows]
    for metric, style in (("AP", "o-"), ("APr", "s-"), ("APc", "^--"), ("APf", "v--")):
        ax.plot(gammas, [r[metric] for r in rows], style, label=metric)
    ax.set_xlabel("NorCal gamma")
    ax.set_ylabel("box AP (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import MetadataCatalog, build_detection_test_loader

    from lt_detectron.data import register_json_datasets
    from lt_detectron.engine import LTTrainer, build_cfg, register_lt_components
    from lt_detectron.engine.setup import check_cfg_datasets
    from lt_detectron.evaluation import evaluate_lvis
    from lt_detectron.modeling import NorCal
    from lt_detectron.modeling.calibration import calibration_counts

    register_lt_components()
    cfg = build_cfg(args.config_file, list(args.opts) + ["MODEL.WEIGHTS", args.weights])
    check_cfg_datasets(cfg, train=True)
    if args.gt:  # an LVIS-format held-out set, registered as DATASETS.LT_JSON_DATASETS does
        dataset = register_json_datasets([(TUNE_DATASET, args.gt, args.image_root, "lvis")])[0]
    else:
        dataset = cfg.DATASETS.TEST[0]
    model = LTTrainer.build_model(cfg)
    DetectionCheckpointer(model).load(args.weights)
    model.eval()
    predictor = model.roi_heads.box_predictor
    if not getattr(predictor, "scores_sum_to_one", True):
        sys.exit(
            f"error: {cfg.MODEL.LT.BOX_CLASSIFIER!r} scores classes with sigmoids; NorCal needs C+1 softmax scores."
        )
    predictor.score_calibration = None  # the kept scores are the model's own
    counts = calibration_counts(cfg)

    kept = collect_scores(model, build_detection_test_loader(cfg, dataset), args.max_images)
    meta = MetadataCatalog.get(dataset)
    reverse = {v: k for k, v in getattr(meta, "thing_dataset_id_to_contiguous_id", {}).items()}
    to_dataset_id = (lambda c: reverse[c]) if reverse else (lambda c: c + 1)  # LVIS v1: ids 1..C
    image_ids = {image["image_id"] for image in kept}
    with open(meta.json_file) as f:
        gt = json.load(f)
    if args.gt:  # r/c/f groups of the model's training data, not of the data the held-out json came with
        regroup_by_training_frequency(gt, cfg)
    if args.max_images:
        gt["images"] = [im for im in gt["images"] if im["id"] in image_ids]
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in image_ids]
    rows: List[Dict[str, float]] = []
    for gamma in args.gammas:
        results = detections_at(kept, NorCal(counts, gamma), predictor, to_dataset_id)
        summary = evaluate_lvis(gt, results, ["bbox"], workers=1)["bbox"].summary
        rows.append({"gamma": gamma, **{k: 100.0 * summary[k] for k in ("AP", "APr", "APc", "APf")}})
        print(
            f"[calibration] gamma {gamma:g}: AP {rows[-1]['AP']:.1f} APr {rows[-1]['APr']:.1f} "
            f"APc {rows[-1]['APc']:.1f} APf {rows[-1]['APf']:.1f}",
            flush=True,
        )
    output = args.output or os.path.dirname(os.path.abspath(args.weights))
    from lt_detectron.utils import atomic_write

    report = {
        "weights": os.path.abspath(args.weights),
        "evaluated_on": meta.json_file,
        "counts": cfg.TEST.LT_CALIBRATION_COUNTS,
        "images": len(kept),
        "rows": rows,
        "best_gamma_by_AP": max(rows, key=lambda r: r["AP"])["gamma"],
    }
    atomic_write(os.path.join(output, "norcal_sweep.json"), lambda f: f.write(json.dumps(report, indent=2)), False)
    figure = plot(rows, os.path.join(output, "norcal_sweep.png"), f"NorCal on {os.path.basename(meta.json_file)}")
    print("| gamma | AP | APr | APc | APf |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['gamma']:g} | {r['AP']:.1f} | {r['APr']:.1f} | {r['APc']:.1f} | {r['APf']:.1f} |")
    print(f"[calibration] best gamma by AP: {report['best_gamma_by_AP']:g}; {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
