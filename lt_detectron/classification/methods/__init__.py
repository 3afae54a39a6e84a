"""Long-tailed training methods for classification, each a registered `ClassificationMethod` subclass selected by
`METHOD.NAME` and built from the config by its `from_config` (Detectron2's `@configurable`).

A method adapts a `LTClassifierNet` (it may replace `model.classifier` and own extra heads), computes the training
loss of a batch, and produces inference logits. Every loss, class weight and balancer comes from
`lt_detectron.losses` / `lt_detectron.meta`; these modules only wire them to the network (docs/methods.md describes
each method and cites its paper). By family: `losses` (one loss each), `lda`, `meta`, `m2m`; `base` holds the
interface and the registry.
"""

from .base import (
    METHOD_REGISTRY,
    ClassificationMethod,
    MethodInputs,
    StepContext,
    build_method,
    parse_target_prior,
    prepare_method,
)
from .lda import LDAMethod
from .losses import (
    BalancedSoftmaxMethod,
    CBCEMethod,
    CBFocalMethod,
    CEMethod,
    FocalMethod,
    LADEMethod,
    LDAMDRWMethod,
    LDAMMethod,
    LossMethod,
    PCSoftmaxMethod,
    drw_start_epoch,
)
from .m2m import M2mMethod
from .meta import MetaCEMethod, MetaFocalMethod, MetaLDAMMethod, MetaMethod

__all__ = [
    "METHOD_REGISTRY",
    "ClassificationMethod",
    "MethodInputs",
    "StepContext",
    "build_method",
    "parse_target_prior",
    "prepare_method",
    "drw_start_epoch",
    "LossMethod",
    "CEMethod",
    "CBCEMethod",
    "FocalMethod",
    "CBFocalMethod",
    "LDAMMethod",
    "LDAMDRWMethod",
    "BalancedSoftmaxMethod",
    "PCSoftmaxMethod",
    "LADEMethod",
    "LDAMethod",
    "MetaMethod",
    "MetaCEMethod",
    "MetaFocalMethod",
    "MetaLDAMMethod",
    "M2mMethod",
]
