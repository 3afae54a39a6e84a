"""On CUDA a loss call (forward + backward) does not wait for the GPU: constant inputs (priors, weights, margins)
are validated once, when first seen, and per-call inputs are not read back to the host. The CPU stand-in with meta
tensors is tests/test_losses_no_readback.py, which also holds the list of calls."""

from __future__ import annotations

import pytest
import torch
from test_losses_no_readback import NUM_CLASSES, loss_calls

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("name", sorted(loss_calls("cpu")))
def test_loss_call_does_not_synchronise_on_cuda(name):
    call = loss_calls("cuda")[name]
    generator = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(64, NUM_CLASSES, device="cuda", generator=generator, requires_grad=True)
    targets = torch.randint(0, NUM_CLASSES, (64,), device="cuda", generator=generator)
    call(logits, targets).backward()  # first sight: constant inputs are checked (and may synchronise) here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        call(logits, targets).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
