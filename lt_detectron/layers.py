"""Network layers shared by the detection heads and the classification methods (plain PyTorch, no Detectron2).

`cosine_logits` / `CosineLinear`: LDAM's normalised last layer (Cao et al., "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019, arXiv:1906.07413). `projection_head`: the LDA projection head
on which the intra/inter-class divergences are computed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["cosine_logits", "CosineLinear", "COSINE_INITS", "projection_head", "PROJECTION_HEADS"]

COSINE_INITS = ("normal", "uniform_renorm")
PROJECTION_HEADS = ("linear", "mlp")


def cosine_logits(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`cos(w_c, x_i)` for every row x_i of `x` (B, d) and class row w_c of `weight` (C, d): logits in [-1, 1]."""
    return F.linear(F.normalize(x, dim=1), F.normalize(weight, dim=1))


class CosineLinear(nn.Module):
    """Cosine classifier `z_c = scale * cos(w_c, x)`; LDAM keeps scale 1 and its loss applies s.

    `weight` has nn.Linear's layout (out_features, in_features), so Detectron2's `cls_score.weight` fits it.
    init: "normal" (std 0.01, as Detectron2 initialises cls_score; the detection head's choice) or "uniform_renorm"
    (U(-1, 1) with every class vector renormalised, the LDAM authors' NormedLinear; the classification choice).

    Checkpoints written before version 2 by the classification `NormedLinear` stored the transposed weight
    (in_features, out_features); a module built with init "uniform_renorm" transposes such a weight on load.
    """

    _version = 2

    def __init__(self, in_features: int, out_features: int, init: str = "normal", scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)  # temperature: logits scale * cos (1 for LDAM, whose loss applies s)
        if init not in COSINE_INITS:
            raise ValueError(f"CosineLinear: init must be one of {COSINE_INITS}; got {init!r}.")
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        if init == "normal":
            weight = torch.empty(out_features, in_features)
            nn.init.normal_(weight, std=0.01)
        else:
            # Drawn in the authors' (in, out) memory order and kept there (the (out, in) tensor is its transposed
            # view): a seed gives their classifier, and the normalisation and the product round as in their code.
            weight = torch.empty(in_features, out_features).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5).t()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = cosine_logits(x, self.weight)
        return logits if self.scale == 1.0 else logits * self.scale

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, init={self.init!r}, scale={self.scale}"
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        key = prefix + "weight"
        version = local_metadata.get("version", None)
        if key in state_dict and self.init == "uniform_renorm" and (version is None or version < 2):
            weight = state_dict[key]
            if tuple(weight.shape) == (self.in_features, self.out_features):
                state_dict[key] = weight.t()  # classification NormedLinear layout before version 2
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def projection_head(kind: str, in_dim: int, out_dim: int = 128, hidden_dim: int = 512) -> nn.Module:
    """LDA projection head h: "linear" Linear(in_dim, out_dim), or "mlp" Linear(in_dim, 512)-ReLU-Linear(512, out_dim).

    A plain nn.Linear / nn.Sequential, so state-dict keys are `<name>.weight` or `<name>.0.weight`, `<name>.2.weight`.
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
    raise ValueError(f"projection head must be one of {', '.join(PROJECTION_HEADS)}; got {kind!r}.")
