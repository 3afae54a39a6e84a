"""Long-tail losses as plain PyTorch (no Detectron2): the single implementation of every
loss in docs/methods.md.

Logits are (B, C), `counts` / `prior` are length-C; detection passes C+1-way logits with C+1 counts.
"""

from .calibration import norcal_probs
from .class_weights import class_weights, effective_number_beta, parse_target_prior, prior_from_counts
from .eqlv2 import EQLV2_DEFAULTS, EQLv2Defaults, EQLv2Loss
from .lade import LADE_DEFAULTS, LADEDefaults, adjust_logits, balanced_softmax_loss, lade_loss, lader, pc_softmax
from .lda import (
    LDA_DEFAULTS,
    LDA_LVIS_DEFAULTS,
    LDADefaults,
    LDALoss,
    LDAOutput,
    LDATerms,
    RiskBalancer,
    accuracy_percent,
    default_window,
    lda_divergence,
    lda_loss,
    lda_loss_terms,
    weighted_lda_terms,
)
from .ldam import LDAM_DEFAULTS, DeferredReweighting, LDAMDefaults, drw_weights, ldam_loss, ldam_margins
from .registry import LOSS_REGISTRY, LTLoss, build_loss, register_loss
from .reweighted import CB_DEFAULTS, FOCAL_DEFAULTS, CBDefaults, FocalDefaults, cb_cross_entropy, focal_loss
from .seesaw import SEESAW_DEFAULTS, SeesawDefaults, accumulate_class_counts, seesaw_loss

__all__ = [
    "CB_DEFAULTS",
    "CBDefaults",
    "FOCAL_DEFAULTS",
    "FocalDefaults",
    "LDAM_DEFAULTS",
    "LDAMDefaults",
    "LADE_DEFAULTS",
    "LADEDefaults",
    "LDA_DEFAULTS",
    "LDA_LVIS_DEFAULTS",
    "LDADefaults",
    "class_weights",
    "prior_from_counts",
    "effective_number_beta",
    "parse_target_prior",
    "cb_cross_entropy",
    "focal_loss",
    "ldam_loss",
    "ldam_margins",
    "drw_weights",
    "DeferredReweighting",
    "balanced_softmax_loss",
    "lader",
    "lade_loss",
    "adjust_logits",
    "pc_softmax",
    "lda_divergence",
    "RiskBalancer",
    "accuracy_percent",
    "default_window",
    "lda_loss",
    "lda_loss_terms",
    "weighted_lda_terms",
    "LDALoss",
    "LDAOutput",
    "LDATerms",
    "SEESAW_DEFAULTS",
    "SeesawDefaults",
    "seesaw_loss",
    "accumulate_class_counts",
    "EQLV2_DEFAULTS",
    "EQLv2Defaults",
    "EQLv2Loss",
    "norcal_probs",
    "LTLoss",
    "LOSS_REGISTRY",
    "register_loss",
    "build_loss",
]
