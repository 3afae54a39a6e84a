"""Seesaw loss, EQLv2 and NorCal against independent float64 references written as explicit loops over samples and
classes, straight from the formulas in docs/methods.md (nothing here calls the implementations' internals)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lt_detectron import losses as L

# ---------------------------------------------------------------------------------------------------- Seesaw loss

# Class 2 never seen (count 0, clamped to 1), class 1 seen once, class 6 absent from the batch below.
SEESAW_COUNTS = torch.tensor([900.0, 1.0, 0.0, 40.0, 40.0, 7.0, 300.0], dtype=torch.float64)
SEESAW_TARGETS = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4, 5, 0, 3, 1, 5, 2, 0])


def _seesaw_logits(scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(SEESAW_TARGETS), len(SEESAW_COUNTS), generator=generator, dtype=torch.float64) * scale


def seesaw_reference(logits, targets, counts, p, q, eps):
    """Per-sample loss -log(e^{z_i} / sum_j S_ij e^{z_j}), S_ii = 1, built term by term (autograd through z only)."""
    sigma = torch.softmax(logits.detach(), dim=1).tolist()
    n = [max(float(c), 1.0) for c in counts]
    losses = []
    for row in range(logits.shape[0]):
        i = int(targets[row])
        denominator = 0.0
        for j in range(logits.shape[1]):
            if j == i:
                factor = 1.0
            else:
                mitigation = (n[j] / n[i]) ** p if n[j] < n[i] else 1.0
                ratio = sigma[row][j] / max(sigma[row][i], eps)
                compensation = ratio**q if ratio > 1.0 else 1.0
                factor = mitigation * compensation
            denominator = denominator + factor * torch.exp(logits[row, j])
        losses.append(torch.log(denominator) - logits[row, i])
    return torch.stack(losses)


def _loss_and_grad(loss_fn, logits):
    x = logits.clone().requires_grad_(True)
    loss = loss_fn(x)
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (grad,) = torch.autograd.grad((loss * weights).sum(), x)
    return loss.detach(), grad


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("p, q, eps", [(0.8, 2.0, 1e-2), (1.3, 0.7, 0.05), (0.0, 2.0, 1e-2), (0.8, 0.0, 1e-2)])
def test_seesaw_matches_the_loop_reference_in_value_and_gradient(p, q, eps, reduction):
    logits = _seesaw_logits()
    sigma = torch.softmax(logits, dim=1)[torch.arange(len(SEESAW_TARGETS)), SEESAW_TARGETS]
    assert (sigma < eps).any() and (sigma > eps).any()  # both sides of the eps floor are exercised

    def reference(z):
        per_sample = seesaw_reference(z, SEESAW_TARGETS, SEESAW_COUNTS, p, q, eps)
        return {"none": per_sample, "mean": per_sample.mean(), "sum": per_sample.sum()}[reduction]

    expected, expected_grad = _loss_and_grad(reference, logits)
    got, grad = _loss_and_grad(
        lambda z: L.seesaw_loss(z, SEESAW_TARGETS, SEESAW_COUNTS, p=p, q=q, eps=eps, reduction=reduction), logits
    )
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-9)


def test_seesaw_without_factors_is_cross_entropy_and_factors_change_it():
    logits = _seesaw_logits()
    plain = L.seesaw_loss(logits, SEESAW_TARGETS, SEESAW_COUNTS, p=0.0, q=0.0, reduction="none")
    torch.testing.assert_close(plain, F.cross_entropy(logits, SEESAW_TARGETS, reduction="none"))
    default = L.seesaw_loss(logits, SEESAW_TARGETS, SEESAW_COUNTS, reduction="none")
    assert not torch.allclose(default, plain)


def test_seesaw_counts_as_list_and_float32_on_wide_logits():
    """float32 logits spread over hundreds (target probabilities far below float32's range) stay finite and match
    the float64 loop."""
    logits = _seesaw_logits(scale=60.0, seed=3)
    expected, expected_grad = _loss_and_grad(
        lambda z: seesaw_reference(z, SEESAW_TARGETS, SEESAW_COUNTS, 0.8, 2.0, 1e-2), logits
    )
    got, grad = _loss_and_grad(
        lambda z: L.seesaw_loss(z, SEESAW_TARGETS, SEESAW_COUNTS.tolist(), reduction="none"), logits.float()
    )
    assert torch.isfinite(got).all() and expected.max() > 100
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-5, atol=1e-5)


def test_seesaw_half_logits_give_float32_loss_and_half_gradient():
    logits = _seesaw_logits().half().requires_grad_(True)
    loss = L.seesaw_loss(logits, SEESAW_TARGETS, SEESAW_COUNTS)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.float16
    expected = seesaw_reference(logits.detach().double(), SEESAW_TARGETS, SEESAW_COUNTS, 0.8, 2.0, 1e-2).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)


def test_seesaw_under_torch_func_matches_the_hand_written_gradient():
    """The composed path (torch.func transforms: the meta-weighting engine) against the hand-written backward."""
    logits = _seesaw_logits()
    weights = torch.linspace(0.5, 1.5, len(SEESAW_TARGETS), dtype=torch.float64)  # as in _loss_and_grad

    def weighted(z):
        return (L.seesaw_loss(z, SEESAW_TARGETS, SEESAW_COUNTS, reduction="none") * weights).sum()

    _, expected_grad = _loss_and_grad(
        lambda z: L.seesaw_loss(z, SEESAW_TARGETS, SEESAW_COUNTS, reduction="none"), logits
    )
    torch.testing.assert_close(torch.func.grad(weighted)(logits), expected_grad, rtol=1e-12, atol=1e-14)


def test_seesaw_empty_batch_is_zero_and_connected():
    logits = torch.zeros(0, 7, requires_grad=True)
    loss = L.seesaw_loss(logits, torch.zeros(0, dtype=torch.long), SEESAW_COUNTS)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.shape == (0, 7)


def test_accumulate_class_counts_adds_the_batch_in_place():
    counts = torch.tensor([5.0, 0.0, 2.0], dtype=torch.float64)
    returned = L.accumulate_class_counts(counts, torch.tensor([0, 2, 2, 0, 0]))
    assert returned is counts and counts.tolist() == [8.0, 0.0, 4.0]
    integer_counts = torch.zeros(3, dtype=torch.long)
    L.accumulate_class_counts(integer_counts, torch.tensor([[1, 1], [2, 1]]))
    assert integer_counts.tolist() == [0, 3, 1]


def test_seesaw_defaults_record():
    assert (L.SEESAW_DEFAULTS.p, L.SEESAW_DEFAULTS.q, L.SEESAW_DEFAULTS.eps) == (0.8, 2.0, 1e-2)
    assert L.SEESAW_DEFAULTS.cosine_scale == 20.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        L.SEESAW_DEFAULTS.p = 1.0


# ---------------------------------------------------------------------------------------------------------- EQLv2


class EQLv2Reference:
    """The statistics and the loss as plain Python floats, one entry at a time."""

    def __init__(self, num_classes, gamma=12.0, mu=0.8, alpha=4.0, reduce_factor=1.0):
        self.num_classes, self.gamma, self.mu, self.alpha = num_classes, gamma, mu, alpha
        self.reduce_factor = reduce_factor
        self.pos = [0.0] * num_classes
        self.neg = [0.0] * num_classes
        self.batches = 0

    def weights(self, column):
        if column == self.num_classes or self.batches == 0:
            return 1.0, 1.0
        ratio = self.pos[column] / (self.neg[column] + 1e-10)
        negative = 1.0 / (1.0 + math.exp(-self.gamma * (ratio - self.mu)))
        return 1.0 + self.alpha * (1.0 - negative), negative

    def step(self, logits, targets):
        """(loss, gradient d loss / d logits as nested lists), then the statistics update."""
        rows, columns = len(logits), self.num_classes + 1
        loss, grad = 0.0, [[0.0] * columns for _ in range(rows)]
        pos_inc, neg_inc = [0.0] * self.num_classes, [0.0] * self.num_classes
        for n in range(rows):
            for j in range(columns):
                z, t = logits[n][j], 1.0 if targets[n] == j else 0.0
                positive, negative = self.weights(j)
                w = positive * t + negative * (1.0 - t)
                prob = 1.0 / (1.0 + math.exp(-z))
                bce = max(z, 0.0) - t * z + math.log1p(math.exp(-abs(z)))  # -t log p - (1 - t) log(1 - p), stably
                loss += w * bce / rows
                grad[n][j] = w * (prob - t) / rows
                if j < self.num_classes:
                    if t == 1.0:
                        pos_inc[j] += abs(prob - t) * w
                    else:
                        neg_inc[j] += abs(prob - t) * w
        for j in range(self.num_classes):
            self.pos[j] += self.reduce_factor * pos_inc[j]
            self.neg[j] += self.reduce_factor * neg_inc[j]
        self.batches += 1 if rows > 0 else 0
        return loss, grad


def _eqlv2_batches(num_classes=5, rows=(12, 9, 15), seed=0):
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for size in rows:
        logits = torch.randn(size, num_classes + 1, generator=generator, dtype=torch.float64) * 2.0
        targets = torch.randint(0, num_classes + 1, (size,), generator=generator)
        targets[:2] = torch.tensor([num_classes, 0])  # a background and a foreground sample in every batch
        batches.append((logits, targets))
    return batches


def _module_step(module, logits, targets):
    x = logits.clone().requires_grad_(True)
    loss = module(x, targets)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


@pytest.mark.parametrize("kwargs", [{}, {"gamma": 5.0, "mu": 0.3, "alpha": 1.5}])
def test_eqlv2_three_steps_match_the_loop_reference(kwargs):
    module = L.EQLv2Loss(5, **kwargs)
    reference = EQLv2Reference(5, **kwargs)
    for step, (logits, targets) in enumerate(_eqlv2_batches()):
        expected_loss, expected_grad = reference.step(logits.tolist(), targets.tolist())
        loss, grad = _module_step(module, logits, targets)
        assert loss.item() == pytest.approx(expected_loss, rel=1e-12, abs=1e-12), step
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(
            module.pos_grad, torch.tensor(reference.pos, dtype=torch.float64), rtol=1e-12, atol=0
        )
        torch.testing.assert_close(
            module.neg_grad, torch.tensor(reference.neg, dtype=torch.float64), rtol=1e-12, atol=0
        )
        assert module.num_batches.item() == step + 1
        if step == 0:  # no statistics yet: weight 1 everywhere, plain BCE
            one_hot = F.one_hot(targets, 6).double()
            plain = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="sum") / len(targets)
            assert loss.item() == pytest.approx(plain.item(), rel=1e-12)
    positive, negative = module.weights()
    assert positive[-1] == 1.0 and negative[-1] == 1.0 and not torch.all(negative == 1.0)


def test_eqlv2_float32_and_batches_over_64_rows_match_the_float64_reference():
    """float32 (the training dtype) against the float64 loop, with batches of 64 rows and more (the loss takes the
    column sums of log max(s, 1 - s) as logs of products of 64 rows) and logits out to +-40."""
    module = L.EQLv2Loss(5)
    reference = EQLv2Reference(5)
    batches = _eqlv2_batches(rows=(150, 64, 200), seed=2)
    for logits, targets in batches:
        logits = logits * 2.0
        logits[:3, :3] = torch.tensor([[40.0, -40.0, 25.0], [-40.0, 40.0, -25.0], [0.0, 18.0, -18.0]])
        logits = logits.float()
        expected_loss, expected_grad = reference.step(logits.double().tolist(), targets.tolist())
        loss, grad = _module_step(module, logits, targets)
        assert loss.item() == pytest.approx(expected_loss, rel=2e-6)
        torch.testing.assert_close(
            grad.double(), torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-8
        )
        torch.testing.assert_close(module.pos_grad, torch.tensor(reference.pos, dtype=torch.float64), rtol=1e-5, atol=0)
        torch.testing.assert_close(module.neg_grad, torch.tensor(reference.neg, dtype=torch.float64), rtol=1e-5, atol=0)


def test_eqlv2_state_dict_round_trip_continues_identically():
    batches = _eqlv2_batches(rows=(12, 9, 15, 11), seed=1)
    module = L.EQLv2Loss(5)
    for logits, targets in batches[:2]:
        module(logits, targets)
    state = module.state_dict()
    assert set(state) == {"pos_grad", "neg_grad", "num_batches"}
    resumed = L.EQLv2Loss(5)
    resumed.load_state_dict(copy.deepcopy(state))
    for logits, targets in batches[2:]:
        loss, grad = _module_step(module, logits, targets)
        resumed_loss, resumed_grad = _module_step(resumed, logits, targets)
        assert torch.equal(loss, resumed_loss) and torch.equal(grad, resumed_grad)
        assert torch.equal(module.pos_grad, resumed.pos_grad) and torch.equal(module.neg_grad, resumed.neg_grad)
    assert resumed.num_batches.item() == 4


def test_eqlv2_reduce_sums_the_increments_over_processes():
    """A stand-in for an all-reduce over two identical processes: increments (and the loss that follows) double."""
    calls = []

    def reduce(tensor):
        calls.append(tensor.clone())
        return 2 * tensor

    module = L.EQLv2Loss(5, reduce=reduce)
    reference = EQLv2Reference(5, reduce_factor=2.0)
    single = L.EQLv2Loss(5)
    for logits, targets in _eqlv2_batches():
        expected_loss, _ = reference.step(logits.tolist(), targets.tolist())
        loss, _ = _module_step(module, logits, targets)
        single(logits, targets)
        assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert len(calls) == 3 and all(call.dtype == torch.float64 for call in calls)
    torch.testing.assert_close(module.pos_grad, torch.tensor(reference.pos, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(module.neg_grad, torch.tensor(reference.neg, dtype=torch.float64), rtol=1e-12, atol=0)
    # Both sides doubled leave every ratio (up to its 1e-10), hence every weight: twice one process's statistics.
    torch.testing.assert_close(module.pos_grad, 2 * single.pos_grad, rtol=1e-9, atol=0)
    torch.testing.assert_close(module.neg_grad, 2 * single.neg_grad, rtol=1e-9, atol=0)
    torch.testing.assert_close(calls[0][-1], torch.tensor(12.0, dtype=torch.float64))  # the batch's sample count


def test_eqlv2_empty_batch_is_zero_connected_and_leaves_the_statistics():
    module = L.EQLv2Loss(5)
    logits, targets = _eqlv2_batches()[0]
    module(logits, targets)
    before = copy.deepcopy(module.state_dict())
    calls = []
    module.reduce = lambda t: calls.append(t) or t  # an empty batch still takes part in the collective
    empty = torch.zeros(0, 6, dtype=torch.float64, requires_grad=True)
    loss = module(empty, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and loss.requires_grad and empty.grad.shape == (0, 6)
    assert len(calls) == 1
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_eqlv2_eval_mode_and_torch_func_leave_the_statistics():
    module = L.EQLv2Loss(5)
    batches = _eqlv2_batches()
    module(*batches[0])
    before = copy.deepcopy(module.state_dict())
    logits, targets = batches[1]
    module.eval()
    eval_loss = module(logits, targets)
    module.train()
    func_grad = torch.func.grad(lambda z: module(z, targets))(logits)
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name
    loss, grad = _module_step(module, logits, targets)  # the same weights: the statistics did not move
    assert eval_loss.item() == pytest.approx(loss.item(), rel=1e-12)
    torch.testing.assert_close(func_grad, grad, rtol=1e-12, atol=1e-15)
    assert module.num_batches.item() == 2


def test_eqlv2_half_logits():
    module = L.EQLv2Loss(5)
    logits, targets = _eqlv2_batches()[0]
    half = logits.half().requires_grad_(True)
    loss = module(half, targets)
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == torch.float16
    assert module.pos_grad.dtype == torch.float64


def test_eqlv2_defaults_record():
    defaults = L.EQLV2_DEFAULTS
    assert (defaults.gamma, defaults.mu, defaults.alpha) == (12.0, 0.8, 4.0)
    module = L.EQLv2Loss(3)
    assert (module.gamma, module.mu, module.alpha) == (12.0, 0.8, 4.0)


# --------------------------------------------------------------------------------------------------------- NorCal

NORCAL_COUNTS = [500.0, 30.0, 1.0, 0.0, 12.0]


def _norcal_logits(seed=0, rows=9):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, len(NORCAL_COUNTS) + 1, generator=generator, dtype=torch.float64) * 3.0


def norcal_reference(logits, counts, gamma):
    """(probabilities, per-row normaliser) from exp(z_c) / max(n_c, 1)^gamma and exp(z_C), one entry at a time."""
    probs, normalisers = [], []
    for row in logits.tolist():
        scores = [math.exp(z) / max(n, 1.0) ** gamma for z, n in zip(row[:-1], counts)] + [math.exp(row[-1])]
        total = sum(scores)
        probs.append([s / total for s in scores])
        normalisers.append(total)
    return torch.tensor(probs, dtype=torch.float64), torch.tensor(normalisers, dtype=torch.float64)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 1.7])
def test_norcal_matches_the_loop_reference(gamma):
    logits = _norcal_logits()
    probs = L.norcal_probs(logits, NORCAL_COUNTS, gamma)
    expected, normaliser = norcal_reference(logits, NORCAL_COUNTS, gamma)
    torch.testing.assert_close(probs, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(logits), dtype=torch.float64), rtol=0, atol=1e-12)
    # the background's numerator is exp(z_C), untouched by the calibration
    torch.testing.assert_close(probs[:, -1] * normaliser, logits[:, -1].exp(), rtol=1e-9, atol=0)
    if gamma == 0.0:
        torch.testing.assert_close(probs, torch.softmax(logits, dim=1), rtol=1e-12, atol=1e-15)


def test_norcal_clamps_zero_counts_keeps_shape_and_dtype():
    logits = _norcal_logits()
    counts = torch.tensor(NORCAL_COUNTS, dtype=torch.float64)
    seen_once = counts.clone()
    seen_once[3] = 1.0
    torch.testing.assert_close(L.norcal_probs(logits, counts, 1.0), L.norcal_probs(logits, seen_once, 1.0))
    batched = logits.reshape(3, 3, -1)
    torch.testing.assert_close(
        L.norcal_probs(batched, counts, 0.8).reshape_as(logits), L.norcal_probs(logits, counts, 0.8)
    )
    assert L.norcal_probs(logits.half(), counts, 0.8).dtype == torch.float32
    huge = logits * 1000.0  # log space: no overflow
    assert torch.isfinite(L.norcal_probs(huge.float(), counts, 1.0)).all()


def test_norcal_rechecks_counts_modified_in_place():
    counts = torch.tensor(NORCAL_COUNTS, dtype=torch.float64)
    logits = _norcal_logits()
    before = L.norcal_probs(logits, counts, 1.0)
    counts[0] = 5.0
    after = L.norcal_probs(logits, counts, 1.0)
    torch.testing.assert_close(after, norcal_reference(logits, counts.tolist(), 1.0)[0], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(before, after)
    counts[1] = -1.0
    with pytest.raises(ValueError, match="norcal_probs: `counts` must be >= 0"):
        L.norcal_probs(logits, counts, 1.0)


# --------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: L.seesaw_loss(torch.zeros(4), torch.zeros(4, dtype=torch.long), [1.0] * 4), "seesaw_loss: `logits`"),
        (lambda: L.seesaw_loss(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), [1.0] * 3), "`targets` must have"),
        (lambda: L.seesaw_loss(torch.zeros(4, 3), torch.zeros(4), [1.0] * 3), "`targets` must be an integer"),
        (lambda: L.seesaw_loss(torch.zeros(2, 3), torch.tensor([0, 3]), [1.0] * 3), r"must lie in \[0, 2\]"),
        (lambda: L.seesaw_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1.0] * 4), "seesaw_loss: `counts` has 4"),
        (lambda: L.seesaw_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1.0, -1.0, 2.0]), "`counts` must be >= 0"),
        (lambda: L.seesaw_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1.0] * 3, p=-1.0), "`p` must be finite"),
        (lambda: L.seesaw_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1.0] * 3, eps=0.0), "`eps` must lie in"),
        (lambda: L.seesaw_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1.0] * 3, reduction="avg"), "`reduction`"),
        (lambda: L.accumulate_class_counts([0.0, 1.0], torch.tensor([0])), "accumulate_class_counts: `counts`"),
        (lambda: L.EQLv2Loss(0), "EQLv2Loss: `num_classes` must be an int >= 1"),
        (lambda: L.EQLv2Loss(3, gamma=0.0), "EQLv2Loss: `gamma`"),
        (lambda: L.EQLv2Loss(3, reduce="sum"), "EQLv2Loss: `reduce` must be a callable"),
        (
            lambda: L.EQLv2Loss(3)(torch.zeros(2, 3), torch.tensor([0, 1])),
            r"EQLv2Loss.forward: `logits` must have C \+ 1 = 4",
        ),
        (
            lambda: L.EQLv2Loss(3)(torch.zeros(2, 4), torch.tensor([0, 4])),
            r"EQLv2Loss.forward: `targets` must lie in \[0, 3\]",
        ),
        (
            lambda: L.EQLv2Loss(3)(torch.zeros(2, 4, 1), torch.tensor([0, 1])),
            "EQLv2Loss.forward: `logits` must be a floating",
        ),
        (lambda: L.EQLv2Loss(3).to("meta")(torch.zeros(2, 4), torch.tensor([0, 1])), "Fix: move the loss"),
        (lambda: L.norcal_probs(torch.zeros(2, 4), [1.0] * 4, 1.0), r"norcal_probs: `counts` has 4 entries"),
        (lambda: L.norcal_probs(torch.zeros(2, 4), torch.ones(4), 1.0), r"must have shape \(C,\) = \(3,\)"),
        (lambda: L.norcal_probs(torch.zeros(2, 4), [1.0] * 3, -0.5), "norcal_probs: `gamma` must be"),
        (lambda: L.norcal_probs(torch.zeros(2, 1), [], 1.0), "C \\+ 1 >= 2 columns"),
        (lambda: L.norcal_probs(torch.zeros(2, 4, dtype=torch.long), [1.0] * 3, 1.0), "norcal_probs: `logits`"),
    ],
)
def test_input_errors_name_the_function_and_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_seesaw_counts_on_an_accelerator_are_shape_checked_without_reading_them():
    logits = torch.empty(4, 3, device="meta")
    with pytest.raises(ValueError, match=r"seesaw_loss: `counts` must have shape \(C,\) = \(3,\)"):
        L.seesaw_loss(logits, torch.empty(4, dtype=torch.long, device="meta"), torch.empty(4, device="meta"))
