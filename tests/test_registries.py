"""Registries for box classifiers, losses, classification methods, models and datasets: decorators from outside the
package and unknown names listing the known ones."""

from __future__ import annotations

import math
import os

import pytest
from _scripts import load_script

pytest.importorskip("detectron2")
torch = pytest.importorskip("torch")

from detectron2.config import configurable  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from lt_detectron import losses as L  # noqa: E402
from lt_detectron.data import generate_lt_shapes, register_lt_shapes  # noqa: E402
from lt_detectron.modeling import BOX_PREDICTOR_REGISTRY, LTBoxPredictor  # noqa: E402
from lt_detectron.registry import Registry  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
TINY = """
SOLVER.IMS_PER_BATCH 2
SOLVER.MAX_ITER 1
SOLVER.WARMUP_ITERS 1
SOLVER.CHECKPOINT_PERIOD 1000
DATALOADER.NUM_WORKERS 0
MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE 32
MODEL.RPN.POST_NMS_TOPK_TEST 50
TEST.DETECTIONS_PER_IMAGE 20
MODEL.ROI_HEADS.NAME LTROIHeads
""".split()


class _TemperatureBoxPredictor(LTBoxPredictor):
    """A user's head: softmax CE on logits divided by a temperature from the config's own key."""

    built: list = []
    loss_calls = 0

    @configurable
    def __init__(self, input_shape, *, temperature: float = 2.0, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.temperature = temperature
        type(self).built.append(self)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {**super().from_config(cfg, input_shape), "temperature": 3.0}

    def _classification_loss(self, scores, gt_classes, reduction):
        type(self).loss_calls += 1
        return F.cross_entropy(scores / self.temperature, gt_classes, reduction=reduction)


@pytest.fixture
def user_box_classifier():
    """Registered from outside lt_detectron with the decorator a user project writes; removed afterwards."""
    name = "test_temperature_ce"
    BOX_PREDICTOR_REGISTRY.register(name)(_TemperatureBoxPredictor)
    _TemperatureBoxPredictor.built.clear()
    _TemperatureBoxPredictor.loss_calls = 0
    yield name
    BOX_PREDICTOR_REGISTRY._obj_map.pop(name)  # fvcore has no public unregister; keep other tests' registry clean


def test_user_box_classifier_trains_one_step_through_train_net(user_box_classifier, tmp_path):
    root = tmp_path / "lt_shapes"
    generate_lt_shapes(str(root), seed=0, overwrite=True, num_train_images=8, num_val_images=8)
    train_net = load_script("tools/train_net.py", "lt_tools_train_net")
    args = default_argument_parser().parse_args(
        ["--config-file", DEMO_BASELINE]
        + TINY
        + ["MODEL.LT.BOX_CLASSIFIER", user_box_classifier]
        + ["DATASETS.LT_SHAPES_DIR", str(root), "OUTPUT_DIR", str(tmp_path / "out")]
    )
    try:
        torch.manual_seed(0)
        results = train_net.main(args)  # what `python tools/train_net.py ...` runs in each process
    finally:
        register_lt_shapes()  # back to the default root for other tests
    (predictor,) = _TemperatureBoxPredictor.built
    assert predictor.temperature == 3.0 and _TemperatureBoxPredictor.loss_calls == 1  # one training step
    assert {"AP", "APr"} <= set(results["bbox"])
    with open(tmp_path / "out" / "metrics.json") as f:
        first = __import__("json").loads(f.readline())
    assert first["iteration"] == 0 and math.isfinite(first["loss_cls"])


def test_unknown_box_classifier_names_the_registered_ones(user_box_classifier):
    from test_heads_predictors import build_heads, tiny_cfg

    with pytest.raises(ValueError, match=r"valid names: .*test_temperature_ce.*register"):
        build_heads(tiny_cfg("no_such_head"))


def test_registry_register_forms_and_errors():
    registry = Registry("TEST")

    @registry.register()
    def by_name():
        return 1

    @registry.register("short")
    def long_function_name():
        return 2

    registry.register(len, name="length")
    assert registry.names() == ["by_name", "short", "length"] and dict(registry)["short"] is long_function_name
    with pytest.raises(KeyError, match="TEST registry: 'short' is already registered"):
        registry.register("short")(len)
    with pytest.raises(KeyError, match="no 'nope'; known: by_name, short, length"):
        registry.get("nope")


def test_losses_registry_takes_a_users_loss():
    @L.LOSS_REGISTRY.register("test_squared_margin")
    class SquaredMargin(L.LTLoss):
        def __init__(self, counts=None, margin: float = 1.0):
            super().__init__()
            self.margin = margin

        def forward(self, logits, targets, reduction="mean"):
            return F.cross_entropy(logits - self.margin, targets, reduction=reduction)

    try:
        loss = L.build_loss("test_squared_margin", margin=0.5)
        assert isinstance(loss, SquaredMargin) and loss.margin == 0.5
        with pytest.raises(ValueError, match="known losses: .*test_squared_margin"):
            L.build_loss("nope")
    finally:
        L.LOSS_REGISTRY._obj_map.pop("test_squared_margin")
    with pytest.raises(KeyError, match="already registered"):
        L.register_loss("ce")(SquaredMargin)


def test_classification_registries_take_user_entries(tmp_path):
    from _cls_train_helpers import tiny_cfg

    from lt_detectron.classification.datasets import DATASET_REGISTRY, build_dataset
    from lt_detectron.classification.methods import METHOD_REGISTRY, FocalMethod
    from lt_detectron.classification.models import MODEL_REGISTRY, build_model
    from lt_detectron.classification.trainer import ClassificationTrainer

    @MODEL_REGISTRY.register("test_tiny_mlp")
    def tiny_mlp():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU()), 8

    @DATASET_REGISTRY.register("test_digits_again")
    def digits_again(root, **kw):
        return build_dataset("digits_lt", root, **kw)

    @METHOD_REGISTRY.register("test_focal_gamma1")
    class FocalGamma1(FocalMethod):  # a user's method: a subclass that reads its options its own way
        @classmethod
        def loss_options(cls, cfg):
            return {"gamma": 1.0}

    try:
        assert build_model("test_tiny_mlp", 10).feat_dim == 8
        cfg = tiny_cfg(
            tmp_path, "test_focal_gamma1", "MODEL.NAME", "test_tiny_mlp", "DATASET.NAME", "test_digits_again"
        )
        trainer = ClassificationTrainer(cfg)
        assert trainer.method.loss.gamma == 1.0 and trainer.method.name == "test_focal_gamma1"
        trainer.run_step(*next(iter(trainer._train_loader(0, 0))))
    finally:
        MODEL_REGISTRY._obj_map.pop("test_tiny_mlp")
        DATASET_REGISTRY._obj_map.pop("test_digits_again")
        METHOD_REGISTRY._obj_map.pop("test_focal_gamma1")
