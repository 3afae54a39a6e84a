"""Dev-set builder, dev sampler and eps plot of lt_detectron.meta (docs/methods.md#meta-learned-conditional-weights)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lt_detectron.meta import DevBatchSampler, EpsTracker, build_dev_split, plot_eps_by_group


def test_single_label_split_is_balanced_and_keeps_one_training_example():
    counts = [50, 12, 4, 2, 1]
    labels = np.repeat(np.arange(5), counts)
    split = build_dev_split(labels, k=3, seed=0)
    dev_labels = labels[split.dev_indices]
    assert np.bincount(dev_labels, minlength=5).tolist() == [3, 3, 3, 1, 0]
    assert np.bincount(labels[split.train_indices], minlength=5).tolist() == [47, 9, 1, 1, 1]
    assert sorted(np.concatenate([split.dev_indices, split.train_indices]).tolist()) == list(range(len(labels)))
    assert split.report.short_classes == {3: 1, 4: 0}
    assert "classes 4" in split.report.summary() and "classes 3" in split.report.summary()


def test_split_is_deterministic_given_seed_and_reports_absent_classes(caplog):
    labels = np.repeat(np.arange(3), [20, 20, 20])
    with caplog.at_level(logging.INFO, logger="lt_detectron.meta.devset"):
        a = build_dev_split(labels, k=2, seed=5, num_classes=4)
    dev_b, train_b, _ = build_dev_split(labels, k=2, seed=5, num_classes=4)  # also unpacks as a tuple
    c = build_dev_split(labels, k=2, seed=6, num_classes=4)
    assert np.array_equal(a.dev_indices, dev_b) and np.array_equal(a.train_indices, train_b)
    assert not np.array_equal(a.dev_indices, c.dev_indices)
    assert a.report.absent_classes == [3]
    assert "dev set" in caplog.text


def test_multilabel_images_rarest_first_never_empty_a_class():
    # image -> classes present; class 2 is rare (2 images), class 0 is everywhere.
    images = [[0], [0], [0, 1], [0, 1], [0, 1], [1], [0, 2], [2, 0, 1], [0], [0]]
    split = build_dev_split(images, k=1, seed=0)
    dev = [images[i] for i in split.dev_indices]
    train = [images[i] for i in split.train_indices]
    for c in range(3):
        assert any(c in img for img in dev), f"class {c} has no dev image"
        assert any(c in img for img in train), f"class {c} lost every training image"
    # Rarest class first, preferring the image with fewest other classes: [0, 2] rather than [2, 0, 1].
    assert [0, 2] in dev and [2, 0, 1] in train
    assert split.report.short_classes == {}


def test_bad_input_errors():
    with pytest.raises(ValueError, match="negative class id"):
        build_dev_split([0, -1], k=1)
    with pytest.raises(ValueError, match="num_classes"):
        build_dev_split([0, 5], k=1, num_classes=3)
    with pytest.raises(ValueError, match="dev set is empty"):
        DevBatchSampler([], batch_size=2)


def test_dev_sampler_covers_every_index_each_pass_and_resumes():
    sampler = DevBatchSampler(range(10, 17), batch_size=3, seed=2)
    first_pass = np.concatenate([sampler.next_batch() for _ in range(3)])[:7]
    assert sorted(first_pass.tolist()) == list(range(10, 17))
    state = sampler.state_dict()
    expected = [sampler.next_batch() for _ in range(4)]
    other = DevBatchSampler(range(10, 17), batch_size=3, seed=2)
    other.load_state_dict(state)
    assert all(np.array_equal(a, other.next_batch()) for a in expected)
    with pytest.raises(ValueError, match="same data"):
        DevBatchSampler(range(5), batch_size=3).load_state_dict(state)


def test_tracker_windows_and_plot_written(tmp_path):
    tracker = EpsTracker(num_classes=4, period=2)
    for it in range(6):
        tracker.update(torch.tensor([0.1 * it, -0.2, 0.3]), torch.tensor([0, 1, 0]), iteration=it)
    iters, means = tracker.history()
    assert iters.tolist() == [1, 3, 5]
    assert np.allclose(
        means[:, 0], [(0.0 + 0.3 + 0.1 + 0.3) / 4, (0.2 + 0.3 + 0.3 + 0.3) / 4, (0.4 + 0.3 + 0.5 + 0.3) / 4]
    )
    assert np.allclose(means[:, 1], -0.2) and np.isnan(means[:, 2:]).all()
    restored = EpsTracker(num_classes=4)
    restored.load_state_dict(tracker.state_dict())
    assert np.array_equal(restored.history()[0], iters)

    out = tmp_path / "sub" / "eps_by_group.png"
    # 3 foreground classes + a trailing background column that the plot ignores.
    written = plot_eps_by_group(iters, means, ["f", "c", "r"], str(out))
    assert written == str(out) and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    assert plot_eps_by_group([], np.zeros((0, 4)), ["f"], str(tmp_path / "none.png")) is None
    with pytest.raises(ValueError, match="groups given"):
        plot_eps_by_group(iters, means, ["f"] * 5, str(out))
