"""Long-tail losses as plain PyTorch (no Detectron2): the single implementation of every
loss in docs/methods.md.

Logits are (B, C), `counts` / `prior` are length-C; detection passes C+1-way logits with C+1 counts.
"""

from .class_weights import class_weights, prior_from_counts
from .lade import adjust_logits, balanced_softmax_loss, lade_loss, lader, pc_softmax
from .lda import RiskBalancer, accuracy_percent, default_window, lda_divergence
from .ldam import drw_weights, ldam_loss, ldam_margins
from .registry import LOSS_REGISTRY, LTLoss, build_loss, register_loss
from .reweighted import cb_cross_entropy, focal_loss

__all__ = [
    "class_weights",
    "prior_from_counts",
    "cb_cross_entropy",
    "focal_loss",
    "ldam_loss",
    "ldam_margins",
    "drw_weights",
    "balanced_softmax_loss",
    "lader",
    "lade_loss",
    "adjust_logits",
    "pc_softmax",
    "lda_divergence",
    "RiskBalancer",
    "accuracy_percent",
    "default_window",
    "LTLoss",
    "LOSS_REGISTRY",
    "register_loss",
    "build_loss",
]
