"""No loss call reads a value back to the host once its constant inputs were checked.

A device-to-host read inside a loss stalls an accelerator's launch queue every iteration. Meta tensors carry no
values, so any such read (`.item()`, a data-dependent branch, `nonzero`, `bincount`) raises on them: forward and
backward on the meta device stand in, on the CPU, for `torch.cuda.set_sync_debug_mode("error")`
(tests/test_losses_cuda_sync.py runs that on a GPU).
"""

from __future__ import annotations

import pytest
import torch

from lt_detectron import losses as L

COUNTS = torch.tensor([500.0, 120.0, 40.0, 9.0, 2.0], dtype=torch.float64)
NUM_CLASSES = len(COUNTS)


def loss_calls(device: str):
    """Every loss of the library on `device`, as (logits, targets) -> scalar; shared with the CUDA test."""
    prior = L.prior_from_counts(COUNTS).float().to(device)
    weight = L.class_weights(COUNTS).float().to(device)
    margins = L.ldam_margins(COUNTS).float().to(device)
    lda_weight = L.class_weights(COUNTS, kind="lda").float().to(device)
    seesaw_counts = COUNTS.float().to(device)  # cumulative counts: a buffer the caller updates on every batch
    eqlv2 = L.EQLv2Loss(NUM_CLASSES - 1).to(device)  # the last column is the background
    return {
        "cb": lambda z, y: L.cb_cross_entropy(z, y, weight),
        "focal": lambda z, y: L.focal_loss(z, y, gamma=2.0),
        "focal_weighted": lambda z, y: L.focal_loss(z, y, gamma=2.0, weight=weight),
        "focal_sigmoid": lambda z, y: L.focal_loss(z, y, gamma=2.0, form="sigmoid"),
        "ldam": lambda z, y: L.ldam_loss(z, y, None, margins=margins),
        "ldam_drw": lambda z, y: L.ldam_loss(z, y, None, margins=margins, weight=weight),
        "balanced_softmax": lambda z, y: L.balanced_softmax_loss(z, y, prior),
        "lade": lambda z, y: L.lade_loss(z, y, prior),
        "lade_column": lambda z, y: L.lade_loss(z, y, prior, importance="column"),
        "lda_divergence": lambda z, y: sum(L.lda_divergence(z, y, num_classes=NUM_CLASSES)),
        "lda_divergence_weighted": lambda z, y: sum(
            L.lda_divergence(z, y, margin=1.5, class_weights=lda_weight, num_classes=NUM_CLASSES)
        ),
        "lda_loss": lambda z, y: L.lda_loss(z, z * 2.0, z, y, lda_weight, alpha=3.0),
        "seesaw": lambda z, y: L.seesaw_loss(z, y, L.accumulate_class_counts(seesaw_counts, y)),
        "seesaw_no_compensation": lambda z, y: L.seesaw_loss(z, y, seesaw_counts, q=0.0),
        "eqlv2": lambda z, y: eqlv2(z, y),  # statistics update included
    }


@pytest.mark.parametrize("name", sorted(loss_calls("cpu")))
def test_loss_forward_and_backward_run_on_meta_tensors(name):
    logits = torch.empty(64, NUM_CLASSES, device="meta", requires_grad=True)
    targets = torch.empty(64, dtype=torch.long, device="meta")
    loss = loss_calls("meta")[name](logits, targets)
    assert loss.shape == () and loss.device.type == "meta"
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad.shape == logits.shape


def _divergence_with_grad(features, targets, **kwargs):
    x = features.clone().requires_grad_(True)
    intra, inter = L.lda_divergence(x, targets, **kwargs)
    (intra * 0.7 + inter * 1.3).backward()
    return intra.detach(), inter.detach(), x.grad


@pytest.mark.parametrize("kwargs", [{}, {"margin": 1.4}, {"margin": 1.2, "class_weights": torch.linspace(0.1, 2.0, 9)}])
def test_lda_divergence_dense_path_matches_the_compact_one(kwargs, monkeypatch):
    """The accelerator path (every class a slot, absent ones masked) against the CPU's (present classes only)."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    targets = torch.tensor([0, 0, 2, 2, 2, 5, 7, 7] * 5)  # classes 1, 3, 4, 6, 8 absent; sizes 10, 15, 5, 10
    intra, inter, grad = _divergence_with_grad(features, targets, **kwargs)
    from lt_detectron.losses import lda as lda_module

    monkeypatch.setattr(lda_module, "on_host", lambda tensor: False)  # take the accelerator path on the CPU
    dense_intra, dense_inter, dense_grad = _divergence_with_grad(features, targets, num_classes=9, **kwargs)
    torch.testing.assert_close(dense_intra, intra)
    torch.testing.assert_close(dense_inter, inter)
    torch.testing.assert_close(dense_grad, grad)
    assert inter > 0 and intra > 0
