"""Classification networks: output shapes, the replaceable classifier, local checkpoints."""

import pytest
import torch
from torch import nn

from lt_detectron.classification.models import LTClassifierNet, build_model


def test_resnet32_is_the_cifar_resnet():
    model = build_model("resnet32", 10)
    assert isinstance(model, LTClassifierNet) and model.feat_dim == 64
    x = torch.randn(2, 3, 32, 32)
    assert model.backbone(x).shape == (2, 64) and model(x).shape == (2, 10)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 5 * 2  # stem + 3 stages x 5 basic blocks x 2 convs (+ the fc = 32 layers)
    n_params = sum(p.numel() for p in model.backbone.parameters())
    assert 0.45e6 < n_params < 0.47e6  # ResNet-32 of He et al. has 0.46M parameters


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_digits_models(name):
    model = build_model(name, 10)
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    assert model.backbone(torch.rand(4, 1, 8, 8)).shape == (4, model.feat_dim)


def test_resnet50_shapes():
    model = build_model("resnet50", 7).eval()
    assert model.feat_dim == 2048
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_classifier_is_replaceable():
    model = build_model("digits_mlp", 10)
    model.classifier = nn.Linear(model.feat_dim, 3, bias=False)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_local_checkpoint_loads_backbone_and_drops_classifier(tmp_path):
    source = build_model("digits_cnn", 10)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": source.state_dict()}, path)  # keys "backbone.*" and "classifier.*"
    target = build_model("digits_cnn", 4, checkpoint=str(path))
    for (name, a), b in zip(source.backbone.state_dict().items(), target.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    assert target.classifier.out_features == 4


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model("digits_cnn", 10, checkpoint=str(tmp_path / "missing.pth"))
    path = tmp_path / "mlp.pth"
    torch.save(build_model("digits_mlp", 10).state_dict(), path)
    with pytest.raises(ValueError, match="does not match the backbone"):
        build_model("digits_cnn", 10, checkpoint=str(path))


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="resnet32.*digits_cnn"):
        build_model("vgg16", 10)
