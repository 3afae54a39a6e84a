"""save_evaluation writes the json and every PNG atomically."""

import json

import pytest
import torch
from PIL import Image

from lt_detectron.classification import plots
from lt_detectron.classification.metrics import evaluate


@pytest.mark.parametrize("num_classes,max_confusion", [(6, 1000), (6, 4)])  # full matrix, then shot groups
def test_save_evaluation_writes_json_and_pngs(tmp_path, monkeypatch, num_classes, max_confusion):
    monkeypatch.setattr(plots, "MAX_CONFUSION_CLASSES", max_confusion)
    torch.manual_seed(0)
    labels = torch.arange(num_classes).repeat(5)
    logits = torch.randn(len(labels), num_classes) + 2 * torch.nn.functional.one_hot(labels, num_classes)
    counts = [300, 120, 60, 25, 10, 2]
    result = evaluate(logits, labels, counts, prior_injection=lambda z, p: z + torch.log(p))
    paths = plots.save_evaluation(result, logits, labels, str(tmp_path / "eval"), prefix="digits")
    assert set(paths) == {"json", "reliability", "per_class_accuracy", "confusion", "shifted_prior"}
    with open(paths["json"]) as f:
        assert json.load(f)["bacc"] == pytest.approx(result["bacc"])
    for name, path in paths.items():
        if name != "json":
            with Image.open(path) as image:
                assert image.format == "PNG" and min(image.size) > 100
    assert not list((tmp_path / "eval").glob("*.tmp"))  # nothing half-written is left behind


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        plots.write_json_atomic({"x": float("nan")}, str(tmp_path / "bad.json"))
    assert not list(tmp_path.iterdir())  # neither the file nor its temporary copy
