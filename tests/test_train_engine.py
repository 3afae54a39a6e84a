"""LTTrainer on a tiny generated lt_shapes: 2-iteration training smoke test of the demo base config, LVIS evaluation
keys, atomic checkpoints, and the tools/train_net.py --eval-only path."""

from __future__ import annotations

import json
import math
import os

import pytest
from _scripts import load_script

pytest.importorskip("detectron2")
torch = pytest.importorskip("torch")

from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.evaluation import LVISEvaluator  # noqa: E402

from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.engine import LTTrainer, build_cfg, build_lt_evaluator  # noqa: E402
from lt_detectron.utils.io import TEMP_SUFFIX  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
# Shrink the demo model's work, not its structure: same backbone/heads, fewer images and RoIs.
TINY = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.WARMUP_ITERS",
    "1",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "TEST.DETECTIONS_PER_IMAGE",
    "20",
]


def _load_tool(name: str):
    return load_script(f"tools/{name}.py", f"lt_tools_{name}")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_shapes_tiny")
    generate_lt_shapes(str(root), seed=0, overwrite=True, num_train_images=12, num_val_images=8)
    yield str(root)
    register_lt_shapes()  # back to the default root for other tests (registration is lazy: nothing generated)


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train_out"))
    cfg = build_cfg(DEMO_BASELINE, TINY + ["DATASETS.LT_SHAPES_DIR", tiny_root, "OUTPUT_DIR", out])
    cfg.freeze()
    torch.manual_seed(0)
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    return cfg, trainer, results


def test_two_iterations_train_and_evaluate_with_lvis_metrics(trained):
    cfg, trainer, results = trained
    assert trainer.iter == cfg.SOLVER.MAX_ITER
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 2 and all(math.isfinite(v) for v, _ in losses)
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "APr", "APc", "APf"} <= set(results[task])
    # Detectron2's default writers: metrics.json and TensorBoard events in OUTPUT_DIR.
    files = os.listdir(cfg.OUTPUT_DIR)
    assert "metrics.json" in files and any(f.startswith("events.out.tfevents") for f in files)


def test_lvis_datasets_get_an_lvis_evaluator_at_300_detections(trained):
    cfg, _, _ = trained
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.DETECTIONS_PER_IMAGE = 300
    evaluator = build_lt_evaluator(cfg, "lt_shapes_val")
    assert isinstance(evaluator, LVISEvaluator) and evaluator._max_dets_per_image == 300  # fast one: a subclass
    MetadataCatalog.get("lt_test_unknown_kind").set(evaluator_type="sem_seg")
    with pytest.raises(NotImplementedError, match="lt_test_unknown_kind"):
        build_lt_evaluator(cfg, "lt_test_unknown_kind")


def test_checkpoints_are_written_atomically(trained):
    cfg, trainer, _ = trained
    files = os.listdir(cfg.OUTPUT_DIR)
    assert "model_final.pth" in files and not [f for f in files if f.endswith(TEMP_SUFFIX)]
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")) as f:
        assert f.read() == "model_final.pth"
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), map_location="cpu", weights_only=True)
    assert saved["iteration"] == cfg.SOLVER.MAX_ITER - 1
    name = next(iter(saved["model"]))
    assert torch.equal(saved["model"][name], trainer.model.state_dict()[name])


def test_train_net_eval_only_evaluates_the_last_checkpoint(trained, tiny_root):
    cfg, _, results = trained
    train_net = _load_tool("train_net")
    args = default_argument_parser().parse_args(
        ["--config-file", DEMO_BASELINE, "--eval-only"]
        + TINY
        + ["DATASETS.LT_SHAPES_DIR", tiny_root, "OUTPUT_DIR", cfg.OUTPUT_DIR]
    )
    again = train_net.main(args)
    # Same weights, same val images, deterministic inference: the same AP.
    assert again["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"], nan_ok=True)


def test_train_net_eval_only_without_weights_is_a_clear_error(tiny_root, tmp_path):
    train_net = _load_tool("train_net")
    args = default_argument_parser().parse_args(
        ["--config-file", DEMO_BASELINE, "--eval-only"]
        + TINY
        + ["DATASETS.LT_SHAPES_DIR", tiny_root, "OUTPUT_DIR", str(tmp_path)]
    )
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        train_net.main(args)


def test_box_head_probe_reports_gradient_norms_per_loss_term(tiny_root, capsys):
    module = load_script("benchmarks/box_head_probe.py", "box_head_probe")
    lda = os.path.join(REPO, "configs", "demo", "lt_shapes_lda.yaml")
    assert (
        module.main(["--config", lda, "--iters", "2", "--every", "1"] + TINY + ["DATASETS.LT_SHAPES_DIR", tiny_root])
        == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["iter"] for r in records] == [0, 1]
    norms = records[-1]["grad_norm"]
    assert norms["loss_cls_unbalanced"] > 0 and norms["loss_fgbg"] > 0
    # The lt_shapes LDA config stops L_b's gradient at the box-head feature.
    assert norms["loss_cls_balanced"] == 0.0
    assert 0.0 <= records[-1]["dead"] <= 1.0


def test_box_head_probe_summarises_saved_probes(tiny_root, capsys, tmp_path):
    module = load_script("benchmarks/box_head_probe.py", "box_head_probe")
    records = [{"iter": i, "dead": 0.1 * (i == 100), "alpha": 2.0 * i, "grad_norm": {}} for i in (0, 20, 100)]
    path = tmp_path / "probe.jsonl"
    path.write_text("noise line\n" + "\n".join(json.dumps(r) for r in records) + "\n")
    assert module.main(["--summarise", f"my run={path}"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| my run | 0.0 % / 40 | – |") and "| 10.0 % |" in row


def test_calibration_sweep_evaluates_gammas_from_one_pass(trained, tiny_root, tmp_path, capsys):
    """gamma 0 is the model as trained: its box AP equals the trainer's own evaluation of the same weights."""
    cfg, trainer, results = trained
    tool = _load_tool("calibration_sweep")
    weights = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    val = os.path.join(tiny_root, "lt_shapes_val.json")
    argv = ["--config-file", DEMO_BASELINE, "--weights", weights, "--gammas", "0", "0.5", "--output", str(tmp_path)]
    argv += ["--gt", val, "--image-root", os.path.join(tiny_root, "images")]
    assert tool.main(argv + TINY + ["DATASETS.LT_SHAPES_DIR", tiny_root]) == 0
    report = json.loads((tmp_path / "norcal_sweep.json").read_text())
    assert [r["gamma"] for r in report["rows"]] == [0.0, 0.5] and report["images"] == 8
    assert report["rows"][0]["AP"] == pytest.approx(results["bbox"]["AP"], abs=1e-6)
    assert (tmp_path / "norcal_sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "best gamma by AP" in capsys.readouterr().out


def test_own_lvis_and_coco_json_train_from_the_command_line(tiny_root, tmp_path):
    """DATASETS.LT_JSON_DATASETS registers json files under new names; LVIS-format ones are validated and counted
    like lt_shapes; a COCO-format copy (category ids 10, 20, ...) goes through Detectron2's COCO loader."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    images = os.path.join(tiny_root, "images")
    lvis_json = os.path.join(tiny_root, "lt_shapes_train.json")
    with open(lvis_json) as f:
        coco = json.load(f)
    for image in coco["images"]:
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            image.pop(key, None)
    for category in coco["categories"]:
        category.pop("frequency", None)
        category["id"] *= 10
    for ann in coco["annotations"]:
        ann["category_id"] *= 10
        ann["iscrowd"] = 0
    coco_json = tmp_path / "coco_train.json"
    coco_json.write_text(json.dumps(coco))
    entries = f"(('own_lvis', '{lvis_json}', '{images}'), ('own_coco', '{coco_json}', '{images}'))"
    out = str(tmp_path / "run")
    cfg = build_cfg(DEMO_BASELINE, TINY + ["DATASETS.LT_JSON_DATASETS", entries, "OUTPUT_DIR", out])
    assert MetadataCatalog.get("own_lvis").evaluator_type == "lvis"
    assert MetadataCatalog.get("own_coco").evaluator_type == "coco"
    assert len(DatasetCatalog.get("own_lvis")) == len(DatasetCatalog.get("own_coco")) == 12
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("own_lvis",), ()
    cfg.freeze()
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    with pytest.raises(ValueError, match="already a registered dataset"):
        build_cfg(DEMO_BASELINE, ["DATASETS.LT_JSON_DATASETS", f"(('lvis_v1_train', '{lvis_json}', '{images}'),)"])
    with pytest.raises(FileNotFoundError, match="annotation file .* does not exist"):
        build_cfg(DEMO_BASELINE, ["DATASETS.LT_JSON_DATASETS", f"(('x', '{tmp_path}/none.json', '{images}'),)"])
