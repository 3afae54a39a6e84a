"""lt_detectron.losses against deliberately naive references: explicit Python loops over samples and classes,
written straight from the formulas of docs/methods.md, on random inputs and edge-case batches."""

from __future__ import annotations

import math

import pytest
import torch

from lt_detectron import losses as L

C = 6
COUNTS = [200.0, 60.0, 20.0, 7.0, 3.0, 1.0]
PRIOR = [n / sum(COUNTS) for n in COUNTS]

# Edge cases from the acceptance list: classes absent from the batch (5 here) and a class with one sample (4),
# a batch of one class, a batch of one sample.
BATCHES = {
    "absent_and_singleton": [0, 0, 0, 1, 1, 2, 2, 3, 4],
    "one_class": [2, 2, 2, 2],
    "one_sample": [3],
}


def make_batch(name: str, dtype=torch.float64, scale: float = 2.0):
    targets = torch.tensor(BATCHES[name])
    generator = torch.Generator().manual_seed(len(BATCHES[name]))
    logits = (scale * torch.randn(len(targets), C, generator=generator)).to(dtype).requires_grad_()
    return logits, targets


def softmax_row(row):
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def naive_effective_number(counts, beta):
    weights = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w * len(counts) / sum(weights) for w in weights]


def naive_lader(z, y, prior, lam, importance):
    batch, num_classes = len(z), len(z[0])
    total = 0.0
    classes = sorted(set(y)) if importance == "label" else range(num_classes)
    for c in classes:
        members = [i for i in range(batch) if y[i] == c]
        first = sum(z[i][c] for i in members) / len(members) if members else 0.0
        acc = 0.0
        for i in range(batch):
            weight = (1 / num_classes) / prior[y[i]] if importance == "label" else (1 / num_classes) / prior[c]
            acc += weight * math.exp(z[i][c])
        second = math.log(acc / batch)
        total += prior[c] * (-first + second + lam * second**2)
    return total


def naive_cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def naive_lda(f, y, margin, weights=None):
    classes = sorted(set(y))
    centres = {}
    intra_terms = []
    for c in classes:
        members = [f[i] for i in range(len(y)) if y[i] == c]
        centres[c] = [sum(col) / len(members) for col in zip(*members)]
        if len(members) >= 2:
            intra_terms.append(sum(1 - naive_cosine(centres[c], m) for m in members) / len(members))
    intra = sum(intra_terms) / len(intra_terms) if intra_terms else 0.0
    numerator = denominator = 0.0
    for a in classes:
        for b in classes:
            if a != b:
                pair = 1.0 if weights is None else weights[a] + weights[b]
                numerator += pair * max(0.0, margin - (1 - naive_cosine(centres[a], centres[b])))
                denominator += pair
    return intra, (numerator / denominator if denominator else 0.0)


@pytest.mark.parametrize("kind", ["inverse", "effective_number", "lda"])
def test_class_weights_match_formula(kind):
    got = L.class_weights(COUNTS, kind=kind, dtype=torch.float64).tolist()
    if kind == "inverse":
        raw = [1 / n for n in COUNTS]
        want = [w * C / sum(raw) for w in raw]
    elif kind == "effective_number":
        total = sum(COUNTS)
        want = naive_effective_number(COUNTS, (total - 1) / total)
    else:
        want = [1 / (C * n) for n in COUNTS]
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("batch", list(BATCHES))
def test_cb_cross_entropy_and_focal_match_loops(batch):
    logits, targets = make_batch(batch)
    weight = L.class_weights(COUNTS, beta=0.999, dtype=torch.float64)
    z, y, w = logits.tolist(), targets.tolist(), weight.tolist()
    gamma = 1.5
    cb, soft_focal, sig_focal = [], [], []
    for i in range(len(y)):
        p_t = softmax_row(z[i])[y[i]]
        cb.append(-w[y[i]] * math.log(p_t))
        soft_focal.append(-w[y[i]] * (1 - p_t) ** gamma * math.log(p_t))
        terms = 0.0
        for c in range(C):
            p = 1 / (1 + math.exp(-z[i][c]))
            q = p if c == y[i] else 1 - p
            terms += -((1 - q) ** gamma) * math.log(q)
        sig_focal.append(w[y[i]] * terms)
    assert L.cb_cross_entropy(logits, targets, weight).item() == pytest.approx(sum(cb) / len(y), rel=1e-9)
    got_soft = L.focal_loss(logits, targets, gamma, weight, "softmax", reduction="none").tolist()
    assert got_soft == pytest.approx(soft_focal, rel=1e-9)
    got_sig = L.focal_loss(logits, targets, gamma, weight, "sigmoid", reduction="sum").item()
    assert got_sig == pytest.approx(sum(sig_focal), rel=1e-9)


@pytest.mark.parametrize("batch", list(BATCHES))
def test_ldam_matches_loop(batch):
    logits, targets = make_batch(batch)
    z, y = logits.tolist(), targets.tolist()
    raw = [n**-0.25 for n in COUNTS]
    margins = [0.5 * r / max(raw) for r in raw]
    scale = 30.0
    want = []
    for i in range(len(y)):
        shifted = [scale * (z[i][c] - (margins[c] if c == y[i] else 0.0)) for c in range(C)]
        want.append(-math.log(softmax_row(shifted)[y[i]]))
    got = L.ldam_loss(logits, targets, COUNTS, max_margin=0.5, scale=scale, reduction="none")
    assert got.tolist() == pytest.approx(want, rel=1e-9)
    assert L.ldam_margins(COUNTS).tolist() == pytest.approx(margins, rel=1e-12)


@pytest.mark.parametrize("batch", list(BATCHES))
def test_balanced_softmax_matches_loop(batch):
    logits, targets = make_batch(batch)
    z, y = logits.tolist(), targets.tolist()
    want = []
    for i in range(len(y)):
        numerator = PRIOR[y[i]] * math.exp(z[i][y[i]])
        want.append(-math.log(numerator / sum(PRIOR[c] * math.exp(z[i][c]) for c in range(C))))  # eq. 19
    got = L.balanced_softmax_loss(logits, targets, PRIOR, reduction="none")
    assert got.tolist() == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("importance", ["label", "column"])
@pytest.mark.parametrize("batch", list(BATCHES))
def test_lader_and_lade_match_loop(batch, importance):
    logits, targets = make_batch(batch)
    z, y = logits.tolist(), targets.tolist()
    want = naive_lader(z, y, PRIOR, 0.1, importance)
    assert L.lader(logits, targets, PRIOR, lam=0.1, importance=importance).item() == pytest.approx(want, rel=1e-9)
    bs = L.balanced_softmax_loss(logits, targets, PRIOR).item()
    lade = L.lade_loss(logits, targets, PRIOR, alpha=0.3, lam=0.1, importance=importance).item()
    assert lade == pytest.approx(bs + 0.3 * want, rel=1e-9)


def test_adjust_logits_and_pc_softmax_match_loop():
    logits, _ = make_batch("absent_and_singleton")
    target = [0.1, 0.1, 0.2, 0.2, 0.3, 0.1]
    z = logits.tolist()
    want = [[z[i][c] - math.log(PRIOR[c]) + math.log(target[c]) for c in range(C)] for i in range(len(z))]
    adjusted = L.adjust_logits(logits, PRIOR, target)
    probabilities = L.pc_softmax(logits, PRIOR, target)
    for i in range(len(z)):
        assert adjusted[i].tolist() == pytest.approx(want[i], rel=1e-9)
        assert probabilities[i].tolist() == pytest.approx(softmax_row(want[i]), rel=1e-9)


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("weighted", [False, True])
def test_lda_divergence_matches_loop(batch, weighted):
    _, targets = make_batch(batch)
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(len(targets), 5, generator=generator, dtype=torch.float64)
    weights = L.class_weights(COUNTS, kind="lda", dtype=torch.float64) if weighted else None
    intra, inter = L.lda_divergence(features, targets, margin=1.0, class_weights=weights)
    want_intra, want_inter = naive_lda(
        features.tolist(), targets.tolist(), 1.0, None if weights is None else weights.tolist()
    )
    assert intra.item() == pytest.approx(want_intra, rel=1e-9, abs=1e-12)
    assert inter.item() == pytest.approx(want_inter, rel=1e-9, abs=1e-12)


# ---- gradients ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", ["absent_and_singleton", "one_class"])
def test_gradcheck_float64(batch):
    logits, targets = make_batch(batch)
    prior = torch.tensor(PRIOR, dtype=torch.float64)
    for importance in ("label", "column"):
        assert torch.autograd.gradcheck(lambda z: L.lader(z, targets, prior, 0.2, importance), (logits,))
        assert torch.autograd.gradcheck(lambda z: L.lade_loss(z, targets, prior, 0.5, 0.2, importance), (logits,))
    assert torch.autograd.gradcheck(lambda z: L.ldam_loss(z, targets, COUNTS, scale=3.0), (logits,))
    features = torch.randn(len(targets), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    # Margin 1.5 keeps every hinge active, away from its kink, for finite differences.
    features.requires_grad_()
    assert torch.autograd.gradcheck(lambda f: L.lda_divergence(f, targets, margin=1.5), (features,))
    pair_weights = L.class_weights(COUNTS, kind="lda", dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda f: L.lda_divergence(f, targets, margin=1.5, class_weights=pair_weights), (features,)
    )
    weight = L.class_weights(COUNTS, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: L.focal_loss(z, targets, 1.5, weight), (logits,))
    assert torch.autograd.gradcheck(
        lambda z: L.balanced_softmax_loss(z, targets, prior, weight, reduction="none"), (logits,)
    )
    # The fused softmax-focal backward: gamma < 1 (the (1-p)^(gamma-1) factor), gamma 0, per-example outputs.
    for gamma in (0.0, 0.5, 2.0):
        assert torch.autograd.gradcheck(lambda z: L.focal_loss(z, targets, gamma, reduction="none"), (logits,))


EXTREME_LOSSES = {
    "cb": lambda z, y: L.cb_cross_entropy(z, y, L.class_weights(COUNTS)),
    "focal": lambda z, y: L.focal_loss(z, y),
    "focal_gamma_half": lambda z, y: L.focal_loss(z, y, gamma=0.5),
    "focal_sigmoid": lambda z, y: L.focal_loss(z, y, form="sigmoid"),
    "ldam": lambda z, y: L.ldam_loss(z, y, COUNTS),
    "balanced_softmax": lambda z, y: L.balanced_softmax_loss(z, y, PRIOR),
    "lader": lambda z, y: L.lader(z, y, PRIOR),
    "lade_column": lambda z, y: L.lade_loss(z, y, PRIOR, importance="column"),
    "lda_divergence": lambda z, y: sum(L.lda_divergence(z, y)),
}


@pytest.mark.parametrize("name", list(EXTREME_LOSSES))
def test_extreme_logits_give_finite_values_and_gradients(name):
    logits, targets = make_batch("absent_and_singleton", dtype=torch.float32)
    extreme = (torch.sign(logits.detach()) * 1e4).requires_grad_()  # |z| = 1e4 in float32
    value = EXTREME_LOSSES[name](extreme, targets)
    (grad,) = torch.autograd.grad(value, extreme)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_float32_fast_paths_match_float64_on_wide_logits():
    """LDAM's s = 30 on N(0, 5) logits puts most exp() arguments far below -87: the float32 CPU path floors them
    (denormal-free) and must still match the float64 computation in value and gradient."""
    generator = torch.Generator().manual_seed(11)
    logits64 = (5.0 * torch.randn(64, 50, generator=generator, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 50, (64,), generator=generator)
    counts = torch.randint(1, 500, (50,), generator=generator).double()
    prior = counts / counts.sum()
    losses = {
        "ldam": lambda z: L.ldam_loss(z, targets, counts, scale=30.0, reduction="none"),
        "balanced_softmax": lambda z: L.balanced_softmax_loss(z * 30.0, targets, prior, reduction="none"),
        "focal": lambda z: L.focal_loss(z * 30.0, targets, 2.0, reduction="none"),
    }
    for name, loss in losses.items():
        want = loss(logits64)
        (want_grad,) = torch.autograd.grad(want.sum(), logits64)
        logits32 = logits64.detach().float().requires_grad_()
        got = loss(logits32)
        (got_grad,) = torch.autograd.grad(got.sum(), logits32)
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-4), name
        # Gradients reach s = 30 in size: float32 rounding of those, relative to the largest, is the tolerance.
        assert torch.allclose(got_grad.double(), want_grad, rtol=1e-4, atol=1e-5 * float(want_grad.abs().max())), name


@pytest.mark.parametrize("importance", ["label", "column"])
@pytest.mark.parametrize("spread", [1.0, 400.0])
def test_lade_fast_and_exact_paths_agree(importance, spread, monkeypatch):
    """LADE's one-exp fast path and its exact fallback give the same value and gradient (float64), and logits spread
    wide enough to underflow the fast path's sums take the exact path."""
    from lt_detectron.losses import lade as lade_module

    generator = torch.Generator().manual_seed(3)
    logits = (spread * torch.randn(32, len(PRIOR), generator=generator, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, len(PRIOR), (32,), generator=generator)
    prior = torch.tensor(PRIOR, dtype=torch.float64)
    calls = []
    fast = lade_module._lade_fast_statistics

    def spy(*args, **kwargs):
        result = fast(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(lade_module, "_lade_fast_statistics", spy)
    value = L.lade_loss(logits, targets, prior, 0.5, 0.2, importance)
    (grad,) = torch.autograd.grad(value, logits)
    monkeypatch.setattr(lade_module, "_lade_fast_statistics", lambda *args, **kwargs: None)
    exact = L.lade_loss(logits, targets, prior, 0.5, 0.2, importance)
    (exact_grad,) = torch.autograd.grad(exact, logits)
    assert calls == [spread == 1.0]  # 400 * N(0, 1) logits: column masses underflow, the fast path declines
    torch.testing.assert_close(value, exact, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, exact_grad, rtol=1e-9, atol=1e-12)


def test_shift_gradients_of_fused_cross_entropy():
    """A learned prior (balanced softmax) or learned margins (LDAM) get gradients through the fused kernel."""
    logits, targets = make_batch("absent_and_singleton")
    prior = torch.tensor(PRIOR, dtype=torch.float64, requires_grad=True)
    margins = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: L.balanced_softmax_loss(logits, targets, p / p.sum()), (prior,))
    assert torch.autograd.gradcheck(lambda m: L.ldam_loss(logits, targets, None, scale=3.0, margins=m), (margins,))
