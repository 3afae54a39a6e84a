"""MetaReweighter (Jamal et al., CVPR 2020, arXiv:2003.10780, Algorithm 1):
closed form, sign, L2RW switch, side effects, resume."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lt_detectron.meta import DevBatchSampler, MetaReweighter


def per_example_ce(logits, targets):
    return F.cross_entropy(logits, targets, reduction="none")


def _linear(d: int, c: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(d, c).double()
    with torch.no_grad():
        lin.weight.normal_(0, 0.5)
        lin.bias.normal_(0, 0.1)
    return lin


def _closed_form_linear_softmax(W, b, x, y, w_cls, xd, yd, eta, tau):
    """eps_i = tau * eta / |B| * <grad L_d(theta'), grad L_i(theta)> with softmax-CE gradients written out."""
    C = W.shape[0]

    def per_example_grads(W_, b_, xs, ys):
        residual = torch.softmax(xs @ W_.T + b_, dim=1) - F.one_hot(ys, C).double()  # dL_i/dz_i
        return torch.einsum("bc,bd->bcd", residual, xs), residual  # dL_i/dW, dL_i/db

    gW, gb = per_example_grads(W, b, x, y)
    B = x.shape[0]
    W1 = W - eta * (w_cls[y][:, None, None] * gW).sum(0) / B
    b1 = b - eta * (w_cls[y][:, None] * gb).sum(0) / B
    dW, db = per_example_grads(W1, b1, xd, yd)
    dev_gW, dev_gb = dW.mean(0), db.mean(0)
    dots = (gW * dev_gW).sum((1, 2)) + (gb * dev_gb).sum(1)
    return tau * eta / B * dots


def test_one_step_matches_closed_form_linear_softmax():
    torch.manual_seed(1)
    d, C, B, Bd = 5, 4, 7, 6
    lin = _linear(d, C)
    x, y = torch.randn(B, d, dtype=torch.float64), torch.randint(0, C, (B,))
    xd, yd = torch.randn(Bd, d, dtype=torch.float64), torch.arange(Bd) % C
    w_cls = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    eta, tau = 0.3, 2.0
    meta = MetaReweighter(w_cls, inner_lr=eta, eps_lr=tau)
    res = meta.step(lin, per_example_ce, x, y, xd, yd, iteration=0)
    expected = _closed_form_linear_softmax(lin.weight.detach(), lin.bias.detach(), x, y, w_cls, xd, yd, eta, tau)
    assert torch.allclose(res.eps, expected, atol=1e-6, rtol=0)
    assert torch.allclose(res.eps_grad, -expected / tau, atol=1e-6, rtol=0)
    assert torch.allclose(res.weights, w_cls[y] + expected, atol=1e-6, rtol=0)
    assert expected.abs().max() > 1e-3  # the check is not vacuous


def test_agreeing_gradient_gets_larger_weight():
    torch.manual_seed(2)
    lin = _linear(3, 3, seed=2)
    xd = torch.randn(4, 3, dtype=torch.float64)
    yd = torch.tensor([0, 1, 2, 0])
    # Example 0 repeats a dev example (same gradient direction); example 1 is the same input, another label.
    x = torch.stack([xd[0], xd[0]])
    y = torch.tensor([0, 1])
    meta = MetaReweighter(torch.ones(3, dtype=torch.float64), inner_lr=0.1, eps_lr=1.0)
    res = meta.step(lin, per_example_ce, x, y, xd[:1], yd[:1], iteration=0)
    assert res.eps[0] > 0 > res.eps[1]
    assert res.weights[0] > res.weights[1]


def _batch(seed=3, B=8, C=3, d=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, d, generator=g, dtype=torch.float64), torch.randint(0, C, (B,), generator=g)


def test_l2rw_switch_clips_and_normalises_default_does_neither():
    lin = _linear(4, 3, seed=4)
    x, y = _batch()
    xd, yd = _batch(seed=5, B=6)
    w_cls = torch.tensor([0.2, 1.0, 1.8], dtype=torch.float64)
    ours = MetaReweighter(w_cls, inner_lr=0.5, eps_lr=20.0).step(lin, per_example_ce, x, y, xd, yd, iteration=0)
    l2rw = MetaReweighter(w_cls, inner_lr=0.5, eps_lr=20.0, l2rw=True).step(
        lin, per_example_ce, x, y, xd, yd, iteration=0
    )
    # Default: no clipping (some eps negative) and no normalisation (weights are w + raw eps exactly).
    assert (ours.eps < 0).any() and (ours.eps > 0).any()
    assert torch.equal(ours.eps, ours.raw_eps)
    assert not torch.isclose(ours.weights.mean(), torch.tensor(1.0, dtype=torch.float64))
    # L2RW: weights = (w + max(eps, 0)) rescaled to mean 1 over the batch.
    assert torch.allclose(l2rw.raw_eps, ours.raw_eps)
    clipped = w_cls[y] + ours.raw_eps.clamp_min(0)
    assert torch.allclose(l2rw.weights, clipped / clipped.mean())
    assert torch.isclose(l2rw.weights.mean(), torch.tensor(1.0, dtype=torch.float64))


def test_meta_mask_keeps_class_weight_and_is_excluded_from_tracker():
    lin = _linear(4, 3, seed=6)
    x, y = _batch(seed=7)
    xd, yd = _batch(seed=8, B=5)
    mask = y != 2  # class 2 plays the detection background: no conditional weight
    w_cls = torch.tensor([1.5, 0.5, 1.0], dtype=torch.float64)
    meta = MetaReweighter(w_cls, inner_lr=0.5, eps_lr=5.0, track_period=1)
    res = meta.step(lin, per_example_ce, x, y, xd, yd, iteration=3, meta_mask=mask)
    assert torch.equal(res.weights[~mask], w_cls[y[~mask]])
    assert (res.eps[mask] != 0).all()
    _, means = meta.tracker.history()
    assert np.isnan(means[0, 2]) and not np.isnan(means[0, :2]).any()


def test_full_model_with_batchnorm_matches_autograd_and_has_no_side_effects():
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double().train()
    x, y = _batch(seed=10)
    xd, yd = _batch(seed=11, B=6)
    before = copy.deepcopy(net.state_dict())
    eta, tau = 0.2, 3.0
    meta = MetaReweighter(torch.ones(3, dtype=torch.float64), inner_lr=eta, eps_lr=tau)
    res = meta.step(net, per_example_ce, x, y, xd, yd, iteration=0)
    for k, v in net.state_dict().items():  # no parameter or running-stat change
        assert torch.equal(v, before[k]), k

    # Reference with plain autograd: the virtual step, then per-example gradient dot products.
    params = list(net.parameters())
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.track_running_stats = False
    grads_train = torch.autograd.grad(per_example_ce(ref(x), y).mean(), list(ref.parameters()))
    with torch.no_grad():
        for p, g in zip(ref.parameters(), grads_train):
            p -= eta * g
    dev_grad = torch.autograd.grad(per_example_ce(ref(xd), yd).mean(), list(ref.parameters()))
    ref0 = copy.deepcopy(ref)
    ref0.load_state_dict(before, strict=False)
    expected = []
    for i in range(x.shape[0]):
        # BatchNorm couples the batch: L_i is the i-th loss of the batch forward (what the engine differentiates).
        gi = torch.autograd.grad(per_example_ce(ref0(x), y)[i], list(ref0.parameters()))
        expected.append(tau * eta / x.shape[0] * sum((a * b).sum() for a, b in zip(gi, dev_grad)))
    assert torch.allclose(res.eps, torch.stack(expected), atol=1e-6, rtol=0)
    # The real weighted loss (line 15) carries gradients to every parameter of the model.
    res = meta.step(net, per_example_ce, x, y, xd, yd, iteration=1, compute_loss=True)
    assert torch.allclose(res.loss, (res.weights * per_example_ce(ref0(x), y)).mean())
    res.loss.backward()
    assert all(p.grad is not None for p in params)


def test_is_meta_step_schedule_and_input_errors():
    meta = MetaReweighter(torch.ones(3), start_iter=5)
    assert [meta.is_meta_step(i) for i in (0, 4, 5, 9)] == [False, False, True, True]
    lin = nn.Linear(2, 3)
    with pytest.raises(ValueError, match="targets must lie in"):
        meta.step(
            lin,
            per_example_ce,
            torch.randn(2, 2),
            torch.tensor([0, 3]),
            torch.randn(1, 2),
            torch.tensor([0]),
            iteration=5,
        )
    with pytest.raises(ValueError, match="reduction='none'"):
        meta.step(
            lin,
            lambda z, t: F.cross_entropy(z, t),
            torch.randn(2, 2),
            torch.tensor([0, 1]),
            torch.randn(1, 2),
            torch.tensor([0]),
            iteration=5,
        )
    with pytest.raises(ValueError, match="finite"):
        MetaReweighter(torch.tensor([1.0, float("inf")]))


def _train(meta, lin, opt, sampler, data, dev, iters):
    x, y = data
    xd, yd = dev
    eps_seen = []
    for it in iters:
        idx = torch.arange(it % 4 * 4, it % 4 * 4 + 4)
        if meta.is_meta_step(it):
            d = torch.from_numpy(sampler.next_batch())
            res = meta.step(lin, per_example_ce, x[idx], y[idx], xd[d], yd[d], iteration=it)
            loss = meta.weighted_loss(per_example_ce(lin(x[idx]), y[idx]), res)
            eps_seen.append(res.eps)
        else:
            loss = per_example_ce(lin(x[idx]), y[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return eps_seen


def test_state_dict_resume_is_exact():
    data = _batch(seed=12, B=16)
    dev = _batch(seed=13, B=9)
    w = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)

    def fresh():
        lin = _linear(4, 3, seed=14)
        return (
            MetaReweighter(w, inner_lr=0.3, eps_lr=4.0, start_iter=2, track_period=2),
            lin,
            torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9),
            DevBatchSampler(range(9), 3, seed=1),
        )

    meta, lin, opt, sampler = fresh()
    straight = _train(meta, lin, opt, sampler, data, dev, range(7))

    meta, lin, opt, sampler = fresh()
    first = _train(meta, lin, opt, sampler, data, dev, range(4))
    ckpt = copy.deepcopy(
        {"meta": meta.state_dict(), "model": lin.state_dict(), "opt": opt.state_dict(), "sampler": sampler.state_dict()}
    )
    meta, lin, opt, sampler = fresh()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same config: no warning on load
        meta.load_state_dict(ckpt["meta"])
    lin.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    sampler.load_state_dict(ckpt["sampler"])
    resumed = first + _train(meta, lin, opt, sampler, data, dev, range(4, 7))

    assert len(straight) == len(resumed) == 5
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)
    assert meta.meta_steps == 5
    (it_a, m_a) = meta.tracker.history()
    assert it_a.tolist() == [3, 5]
    assert m_a.shape == (2, 3)


def test_meta_package_is_framework_agnostic():
    code = (
        "import sys, lt_detectron.meta; assert 'detectron2' not in sys.modules, 'lt_detectron.meta imported detectron2'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
