"""Classification metrics against hand-computed values."""

import json
import math

import pytest
import torch

from lt_detectron.classification.metrics import evaluate, shifted_prior, shifted_prior_accuracy

# 3 classes; training counts put one class in each shot group (many > 100, medium 20..100, few < 20).
TRAIN_COUNTS = [150, 50, 5]


def _logits_for(predictions, num_classes=3):
    """Logits whose ranking is pred first, then the other classes in index order."""
    logits = -torch.arange(num_classes, dtype=torch.float).repeat(len(predictions), 1)
    logits[torch.arange(len(predictions)), torch.as_tensor(predictions)] = 10.0
    return logits


def test_fixed_confusion_matrix():
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    preds = [0, 0, 0, 0, 1, 0, 2, 0, 1, 1]  # recalls 4/4, 1/2, 1/4
    result = evaluate(_logits_for(preds), labels, TRAIN_COUNTS)
    assert result["top1"] == pytest.approx(60.0) and result["top1_error"] == pytest.approx(40.0)
    assert result["per_class_recall"] == pytest.approx([100.0, 50.0, 25.0])
    assert result["bacc"] == pytest.approx((100 + 50 + 25) / 3)
    assert result["gm"] == pytest.approx(100 * (1.0 * 0.5 * 0.25) ** (1 / 3))
    assert (result["many"], result["medium"], result["few"]) == pytest.approx((100.0, 50.0, 25.0))
    # top-3 over 3 classes always hits; top-5 is undefined for 3 classes.
    assert result["top3"] == pytest.approx(100.0) and result["top5"] is None
    json.dumps(result, allow_nan=False)  # strictly json-serialisable


def test_top3_and_shot_groups_with_more_classes():
    # 6 classes; true class ranked 1st, 2nd, 3rd, 4th for four samples.
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1]] * 4)
    labels = [0, 1, 2, 3]
    result = evaluate(logits, labels, [300, 200, 60, 30, 10, 1])
    assert result["top1"] == pytest.approx(25.0) and result["top3"] == pytest.approx(75.0)
    assert result["top5"] == pytest.approx(100.0)
    assert (result["num_many_classes"], result["num_medium_classes"], result["num_few_classes"]) == (2, 2, 2)
    assert result["per_class_recall"][4] is None  # no test sample of class 4: left out of the means
    assert result["bacc"] == pytest.approx(25.0) and result["few"] is None


def test_gm_is_zero_when_a_class_is_never_recalled():
    result = evaluate(_logits_for([0, 1, 1]), [0, 1, 2], TRAIN_COUNTS)
    assert result["gm"] == 0.0 and result["bacc"] == pytest.approx(200 / 3)


def _two_class_logits(p_class1):
    """Binary logits with softmax probability p for class 1."""
    p = torch.as_tensor(p_class1, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


def test_ece_and_nll_by_hand():
    # Confidences 0.85 (x3: correct, correct, wrong) and 0.65 (x1, correct), 10 bins.
    logits = _two_class_logits([0.85, 0.85, 0.85, 0.35])  # the last predicts class 0 with 0.65
    labels = [1, 1, 0, 0]
    result = evaluate(logits, labels, [100, 100], ece_bins=10)
    expected_ece = 3 / 4 * abs(2 / 3 - 0.85) + 1 / 4 * abs(1.0 - 0.65)
    assert result["ece"] == pytest.approx(100 * expected_ece)
    rel = result["reliability"]
    assert rel["count"][8] == 3 and rel["count"][6] == 1 and sum(rel["count"]) == 4
    assert rel["accuracy"][8] == pytest.approx(2 / 3) and rel["confidence"][6] == pytest.approx(0.65)
    assert rel["accuracy"][0] is None
    expected_nll = -(2 * math.log(0.85) + math.log(0.15) + math.log(0.65)) / 4
    assert result["nll"] == pytest.approx(expected_nll)


def test_shifted_prior_profiles():
    # mu = 1/ratio; forward keeps the most frequent class largest, backward reverses it.
    assert shifted_prior(2, 4, "forward") == pytest.approx([2 / 3, 1 / 3])
    assert shifted_prior(2, 4, "backward") == pytest.approx([1 / 3, 2 / 3])
    assert shifted_prior(5, 1, "forward") == pytest.approx([0.2] * 5)


def test_shifted_prior_accuracy_by_hand():
    labels = [0, 0, 1, 1]
    logits = _logits_for([0, 0, 1, 0], num_classes=2)  # recalls 1.0, 0.5
    result = shifted_prior_accuracy(logits, labels, [100, 10], ratios=(4, 1))
    assert result["forward"] == pytest.approx([100 * (2 / 3 + 1 / 3 * 0.5), 75.0])
    assert result["backward"] == pytest.approx([100 * (1 / 3 + 2 / 3 * 0.5), 75.0])
    # Ranking follows training frequency, not the class index.
    flipped = shifted_prior_accuracy(logits, labels, [10, 100], ratios=(4,))
    assert flipped["forward"] == pytest.approx(result["backward"][:1])


def test_shifted_prior_with_callable_injection():
    labels = [0, 0, 1, 1]
    logits = torch.zeros(4, 2)  # no evidence: predictions come from the injected prior alone
    result = shifted_prior_accuracy(logits, labels, [100, 10], ratios=(4,), inject=lambda z, p: z + torch.log(p))
    # forward prior [2/3, 1/3] -> always class 0 (the frequent one) -> accuracy = recall-weighted 2/3.
    assert result["forward_injected"] == pytest.approx([100 * 2 / 3])
    assert result["backward_injected"] == pytest.approx([100 * 2 / 3])  # always the now-larger class 1
    assert result["backward"] == pytest.approx([100 * 1 / 3])  # argmax of zeros is class 0 everywhere


def test_shifted_prior_source_injection_is_pc_softmax():
    losses = pytest.importorskip("lt_detectron.losses")
    if not hasattr(losses, "adjust_logits"):
        pytest.skip("lt_detectron.losses.adjust_logits not available yet")
    counts = torch.tensor([100.0, 10.0])
    logits = torch.log(counts / counts.sum()).repeat(4, 1)  # a CE model that only learned the source prior
    result = evaluate(logits, [0, 0, 1, 1], counts, prior_injection="source", shift_ratios=(4,))
    shifted = result["shifted_prior"]
    assert shifted["backward"] == pytest.approx([100 / 3])  # predicts the head class
    assert shifted["backward_injected"] == pytest.approx([200 / 3])  # PC Softmax swaps to the target's head


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(logits=torch.zeros(3)), "logits must be"),
        (dict(labels=[0, 1]), "labels must be"),
        (dict(labels=[0, 1, 5]), r"labels must be in 0\.\.2"),
        (dict(train_counts=[1, 2]), "train_counts"),
        (dict(logits=torch.full((3, 3), float("nan"))), "NaN"),
    ],
)
def test_bad_inputs_are_named(bad, match):
    args = dict(logits=torch.zeros(3, 3), labels=[0, 1, 2], train_counts=TRAIN_COUNTS)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        evaluate(args["logits"], args["labels"], args["train_counts"])
