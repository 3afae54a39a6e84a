"""Every classification method trains a few steps with a finite loss; selection and config errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _cls_train_helpers import tiny_cfg

from lt_detectron.classification.config import ConfigError, load_config
from lt_detectron.classification.methods import METHOD_REGISTRY
from lt_detectron.classification.models import build_model
from lt_detectron.classification.trainer import ClassificationTrainer, EpochSampler, build_lr_multiplier
from lt_detectron.layers import CosineLinear

ALL_METHODS = sorted(METHOD_REGISTRY.names())
# Deferred stages (meta, M2m, DRW) start at epoch 0 so that a few steps exercise them.
START_NOW = ["METHOD.META.START_EPOCH", "0", "METHOD.M2M.START_EPOCH", "0"]


def _trainer(tmp_path, method, *overrides):
    cfg = tiny_cfg(tmp_path / method, method, *START_NOW, *overrides)
    # M2m's g: an (untrained) network of the same architecture is enough to exercise the translation.
    g = build_model("digits_mlp", 10) if method == "m2m" else None
    return ClassificationTrainer(cfg, frozen_classifier=g)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_method_trains_with_finite_loss_and_predicts(tmp_path, method):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, method, *(["METHOD.DRW.START_EPOCH", "0"] if method == "ldam_drw" else []))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    images, targets = next(iter(trainer._train_loader(0, 0)))
    for _ in range(3):
        logs = trainer.run_step(images, targets)
        assert np.isfinite(logs["loss"]), (method, logs)
    if method == "ldam_drw":
        assert logs.get("drw") == 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())), "no parameter moved"
    logits, labels = trainer.predict()
    assert logits.shape == (len(labels), 10) and torch.isfinite(logits).all()


def test_method_specific_parts(tmp_path):
    classifier = _trainer(tmp_path, "ldam").model.classifier
    assert isinstance(classifier, CosineLinear) and classifier.init == "uniform_renorm"
    lda = _trainer(tmp_path, "lda")
    images, targets = next(iter(lda._train_loader(0, 0)))
    logs = lda.run_step(images, targets)
    assert {"lda_alpha", "loss_u", "loss_b", "lda_intra", "lda_inter"} <= set(logs)
    # LDA's extra heads are trained with the model and saved with the method.
    assert {"unbalanced.weight", "projection.weight"} <= set(lda.method.state_dict())
    meta = _trainer(tmp_path, "meta_ce")
    logs = meta.run_step(*next(iter(meta._train_loader(0, 0))))
    assert "meta_dev_loss" in logs and meta.method.reweighter.meta_steps == 1


def test_pc_softmax_and_lade_inject_the_configured_target_prior(tmp_path):
    prior = " ".join(["1"] * 9 + ["1000"])  # almost all mass on class 9
    for method in ("pc_softmax", "lade"):
        trainer = _trainer(tmp_path, method, "METHOD.TEST_TARGET_PRIOR", prior)
        logits, _ = trainer.predict()
        plain, _ = trainer.predict(target_prior=torch.full((10,), 0.1))
        shift = (logits - plain).mean(0)
        assert torch.allclose(shift - shift[0], torch.tensor([0.0] * 9 + [float(np.log(1000.0))]), atol=1e-4)


def test_unknown_method_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        ClassificationTrainer(tiny_cfg(tmp_path, "not_a_method"))
    assert "not_a_method" in str(err.value) and all(m in str(err.value) for m in ("lade", "lda", "m2m", "meta_ldam"))


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(ValueError, match="known: .*digits_lt.*cifar10_lt"):
        ClassificationTrainer(tiny_cfg(tmp_path, "ce", "DATASET.NAME", "mnist_lt"))


def test_config_errors_name_source_key_and_fix(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  EPOCH: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'SOLVER.EPOCH'.*SOLVER.EPOCHS"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="command-line override.*METHOD.LDA.GAMA"):
        load_config(None, ["METHOD.LDA.GAMA", "1.0"])
    with pytest.raises(ConfigError, match="DATASET.ARGS"):
        ClassificationTrainer(tiny_cfg(tmp_path, "ce", "DATASET.ARGS.IMBALANCE", "3"))
    with pytest.raises(ConfigError, match="already class-weighted"):
        ClassificationTrainer(tiny_cfg(tmp_path, "cb_ce", "METHOD.DRW.ENABLED", "True"))


def test_lr_schedule_warmup_step_and_cosine():
    cfg = load_config(
        None,
        [
            "SOLVER.EPOCHS",
            "10",
            "SOLVER.WARMUP_EPOCHS",
            "2",
            "SOLVER.WARMUP_FACTOR",
            "0.1",
            "SOLVER.STEPS",
            "(5,8)",
            "SOLVER.GAMMA",
            "0.1",
        ],
    )
    sched = build_lr_multiplier(cfg, iters_per_epoch=10)  # an fvcore ParamScheduler of iteration / 100

    def f(it: int) -> float:
        return sched(it / 100)

    assert f(0) == pytest.approx(0.1) and f(10) == pytest.approx(0.55) and f(20) == 1.0
    assert f(49) == 1.0 and f(50) == pytest.approx(0.1) and f(80) == pytest.approx(0.01)
    cos = build_lr_multiplier(
        load_config(None, ["SOLVER.EPOCHS", "10", "SOLVER.WARMUP_EPOCHS", "0", "SOLVER.SCHEDULE", "cosine"]),
        iters_per_epoch=10,
    )
    assert cos(0) == 1.0 and cos(0.5) == pytest.approx(0.5) and cos(1.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="SOLVER.STEPS"):
        build_lr_multiplier(load_config(None, ["SOLVER.EPOCHS", "10", "SOLVER.STEPS", "(5,3)"]), iters_per_epoch=10)


def test_epoch_sampler_is_resumable_and_balances_classes():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    sampler = EpochSampler(labels, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip=40)
    assert list(sampler) == full[40:] and sorted(full) == list(range(100))
    sampler.set_epoch(3)
    assert list(sampler) != full  # a new order each epoch
    balanced = EpochSampler(np.tile(labels, 30), seed=0, balanced=True)
    counts = np.bincount(np.tile(labels, 30)[list(balanced)], minlength=3)
    assert counts.min() > 0.28 * counts.sum()  # about a third each, although class 2 is 1% of the data


def test_drs_and_m2m_switch_to_balanced_batches(tmp_path):
    drs = ClassificationTrainer(tiny_cfg(tmp_path / "drs", "ce", "DATALOADER.DRS_START_EPOCH", "1"))
    assert not drs.balanced_sampling(0) and drs.balanced_sampling(1)
    m2m = ClassificationTrainer(
        tiny_cfg(tmp_path / "m2m", "m2m", "METHOD.M2M.START_EPOCH", "1"),
        frozen_classifier=build_model("digits_mlp", 10),
    )
    assert not m2m.balanced_sampling(0) and m2m.balanced_sampling(1)


def test_meta_variants_classifier_mode_l2rw_and_dev_from_train(tmp_path):
    clf = _trainer(tmp_path / "clf", "meta_ce", "METHOD.META.MODE", "classifier")
    backbone_before = [p.detach().clone() for p in clf.model.backbone.parameters()]
    clf.run_step(*next(iter(clf._train_loader(0, 0))))
    # Meta-gradient through the classifier only, but the real step still trains the backbone.
    assert any(not torch.equal(a, b) for a, b in zip(backbone_before, clf.model.backbone.parameters()))

    l2rw = _trainer(tmp_path / "l2rw", "meta_ce", "METHOD.META.L2RW", "True")
    batch = next(iter(l2rw._train_loader(0, 0)))
    dev = l2rw.method._dev_batch(torch.device("cpu"))
    per_example = lambda z, y: torch.nn.functional.cross_entropy(z, y, reduction="none")  # noqa: E731
    result = l2rw.method.reweighter.step(l2rw.model, per_example, batch[0], batch[1], *dev, iteration=0)
    assert (result.weights >= 0).all() and result.weights.mean().item() == pytest.approx(1.0, rel=1e-5)

    held_out = _trainer(
        tmp_path / "train_dev", "meta_ce", "METHOD.META.DEV_SOURCE", "train", "METHOD.META.DEV_PER_CLASS", "2"
    )
    full = np.asarray(held_out.data.train_counts)
    # Two images per class leave the training set (every class has at least 3), and the counts follow.
    assert np.array_equal(held_out.train_counts, full - 2) and len(held_out.method.dev_data) == 20
    assert len(held_out.train_set) == full.sum() - 20


def test_methods_prepare_their_own_inputs(tmp_path):
    """The trainer asks the method's `prepare` for held-out data and extra inputs; it has no per-method branch."""
    from lt_detectron.classification.datasets import build_dataset
    from lt_detectron.classification.methods import prepare_method

    cfg = tiny_cfg(tmp_path, "ce")
    data = build_dataset(cfg.DATASET.NAME, **{k.lower(): v for k, v in cfg.DATASET.ARGS.items()})
    plain = prepare_method(cfg, data)
    assert plain.train_indices is None and plain.extras == {}
    assert prepare_method(tiny_cfg(tmp_path, "m2m"), data, training=False).extras == {}  # no g for evaluation
    g = build_model("digits_mlp", 10)
    assert prepare_method(tiny_cfg(tmp_path, "m2m"), data, frozen_classifier=g).extras["frozen_classifier"] is g
    held = prepare_method(tiny_cfg(tmp_path, "meta_ce", "METHOD.META.DEV_SOURCE", "train"), data)
    dev = set(held.extras["dev_data"].indices)
    assert dev and not dev & set(held.train_indices.tolist())
    assert len(dev) + len(held.train_indices) == len(data.train)


def test_meta_methods_write_their_eps_history_with_the_evaluation(tmp_path):
    """`write_outputs`: the meta methods add eps_history.json and eps.png (Jamal et al. 2020 Fig. 3); CE adds none."""
    import json

    meta = _trainer(tmp_path, "meta_ce", "TEST.PLOTS", "True", "SOLVER.EPOCHS", "10")
    batch = next(iter(meta._train_loader(0, 0)))
    for _ in range(20):  # the eps tracker closes a point every 20 meta steps (META_DEFAULTS.log_period)
        meta.run_step(*batch)
    meta.evaluate(tag="t")
    out = tmp_path / "meta_ce" / "eval" / "t"
    history = json.load(open(out / "eps_history.json"))
    assert (out / "eps.png").is_file() and history["iterations"] == [19] and len(history["eps_mean"][0]) == 10
    _trainer(tmp_path, "ce").method.write_outputs(str(tmp_path / "ce_outputs"))
    assert not (tmp_path / "ce_outputs").exists()
