"""LDA box predictor (Peng et al., ACM MM 2021, arXiv:2110.02686, Appendix B): FgBg + unbalanced + balanced classifiers.

On the box head feature x:
  fgbg        Linear(d, 2), columns (foreground, background), CE on all sampled RoIs
  unbalanced  Linear(d, C), CE on foreground RoIs, summed and divided by the number of sampled RoIs (L_u),
              as Detectron2 normalises its classification loss (UNBALANCED_NORM)
  balanced    Linear(d, C), sum_i w_y CE with w_c = 1 / (C n_c) on foreground RoIs  (L_b)
  projection  Linear(d, 128) or MLP d->512->128, intra/inter divergence on foreground RoIs
Total: L_fgbg + lambda_u L_u + lambda_b a_t L_b + lambda_d (L_intra + L_inter) + L_box, with a_t from the
RiskBalancer. With several processes, L_b (a sum) and the divergence (class centres gathered over processes) are the
global batch's terms: their gradients are scaled by the world size, so that DDP's average of gradients gives the
gradient of one process holding the whole batch (docs/distributed.md).
Inference: score_c = p_fg * softmax(balanced(x))_c, background column 1 - p_fg, then Detectron2's fast_rcnn_inference.
Box regression (`bbox_pred`) is Detectron2's.
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cross_entropy
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from torch import nn
from torch.nn import functional as F

from lt_detectron import losses as lt_losses
from lt_detectron.layers import projection_head
from lt_detectron.utils.distributed import all_reduce_sum, get_world_size, is_distributed
from lt_detectron.utils.records import record_from_config

from .box_predictors import BOX_PREDICTOR_REGISTRY
from .calibration import per_image_probabilities
from .class_counts import read_class_counts
from .predictor_utils import (
    gt_classes_of,
    put_scalars,
    regression_loss,
    reject_roi_weights,
    reject_stock_loss_options,
)
from .priors import zero_count_warning_muted

__all__ = ["LDAScores", "LDABoxPredictor", "balancer_state_to_tensor", "balancer_state_from_tensor"]

FOREGROUND, BACKGROUND = 0, 1  # columns of the FgBg classifier
_LVIS = lt_losses.LDA_LVIS_DEFAULTS  # the paper's detection recipe
UNBALANCED_NORMS = ("sampled", "foreground")


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times `scale` (a term that is a sum over the global batch under DDP)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_gradient(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    return tensor if scale == 1 else _ScaleGradient.apply(tensor, scale)


class LDAScores(NamedTuple):
    """First element of LDABoxPredictor's predictions: the FgBg logits and the box-head features.

    The C-way classifiers and the projection head run in `losses` on the foreground rows only (in training
    they see no background RoI) and in `predict_probs` on every row; this keeps the head's cost close to the
    stock predictor's although it has two C-way classifiers.
    """

    fgbg: torch.Tensor  # (R, 2), columns (foreground, background)
    features: torch.Tensor  # (R, d) box-head features


@BOX_PREDICTOR_REGISTRY.register("lda")
class LDABoxPredictor(FastRCNNOutputLayers):
    """BOX_CLASSIFIER "lda". The stock `cls_score` is replaced by the three classifiers above."""

    # The divergence terms and a_t are batch-level: the loss is not a mean of per-RoI losses (`losses` rejects
    # roi_weights; meta-weighting refuses this head).
    per_example = False

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        class_counts,
        lda: lt_losses.LDADefaults = _LVIS,
        window_batch_size: Optional[int] = None,
        zero_count_policy: str = "error",
        **kwargs,
    ):
        """
        Args:
            input_shape: the box head's output shape.
            class_counts: per-class training counts n_c (length C; from DATASETS.TRAIN, counted as
                MODEL.LT.CLASS_COUNT_SOURCE says).
            lda: the LDA hyper-parameters (MODEL.LT.LDA.*; `LDA_LVIS_DEFAULTS`, the paper's LVIS recipe with the
                measured detection choices); `window` <= 0 derives K from the counts and `window_batch_size`.
            window_batch_size: B of the derived window, the expected foreground RoIs per batch (from the config:
                SOLVER.IMS_PER_BATCH * MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE * MODEL.ROI_HEADS.POSITIVE_FRACTION,
                rounded, at least 1).
            zero_count_policy: "error" or "warn" for a class with n_c = 0 (MODEL.LT.ZERO_COUNT_POLICY).
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        in_dim = self.cls_score.in_features
        del self.cls_score
        num_classes = self.num_classes
        self.fgbg_score = nn.Linear(in_dim, 2)
        self.unbalanced_score = nn.Linear(in_dim, num_classes)
        self.balanced_score = nn.Linear(in_dim, num_classes)
        for layer in (self.fgbg_score, self.unbalanced_score, self.balanced_score):
            nn.init.normal_(layer.weight, std=0.01)  # as Detectron2 initialises cls_score
            nn.init.constant_(layer.bias, 0.0)
        try:
            self.projection = projection_head(lda.proj_head, in_dim, lda.proj_dim)
        except ValueError as err:
            raise ValueError(f"MODEL.LT.LDA.PROJ_HEAD: {err}") from None
        if lda.unbalanced_norm not in UNBALANCED_NORMS:
            raise ValueError(
                f"MODEL.LT.LDA.UNBALANCED_NORM must be one of {UNBALANCED_NORMS}; got {lda.unbalanced_norm!r}."
            )
        self.lda = lda
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        if counts.shape != (num_classes,):
            raise ValueError(
                f"LDABoxPredictor: class_counts has shape {tuple(counts.shape)} but NUM_CLASSES is {num_classes}."
            )
        # w_c = 1 / (C n_c) and the risk balancer live in the loss; derived from the config, not checkpointed.
        with zero_count_warning_muted():
            self.lda_loss = lt_losses.LDALoss.from_defaults(
                counts,
                lda,
                batch_size=window_batch_size,
                zero_policy=zero_count_policy,
                # Accuracy counts summed over processes: every rank holds the global window and a_t (a no-op in
                # one process); with several processes the divergence's class centres are the global batch's too.
                reduce=all_reduce_sum,
                gather_centres=is_distributed(),
            )
        self.register_buffer("class_counts", counts.float(), persistent=False)
        # Where the classifiers came from when a stock checkpoint was loaded (see checkpoint.py).
        self.initialised_from_stock: List[Tuple[str, str]] = []

    @classmethod
    def from_config(cls, cfg, input_shape):
        reject_stock_loss_options(cfg, "lda")
        ret = super().from_config(cfg, input_shape)
        # B of the derived window (WINDOW <= 0): the expected foreground RoIs per batch.
        fg_per_batch = round(
            cfg.SOLVER.IMS_PER_BATCH * cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE * cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION
        )
        ret.update(
            class_counts=read_class_counts(cfg),
            lda=record_from_config(_LVIS, cfg.MODEL.LT.LDA),
            window_batch_size=max(1, fg_per_batch),
            zero_count_policy=cfg.MODEL.LT.ZERO_COUNT_POLICY,
        )
        return ret

    @property
    def risk_balancer(self) -> lt_losses.RiskBalancer:
        """The `RiskBalancer` that gives a_t (held by the LDA loss)."""
        return self.lda_loss.balancer

    @property
    def balanced_weight(self) -> torch.Tensor:
        """(C,) weights w_c = 1 / (C n_c) of L_b."""
        return self.lda_loss.balanced_weight

    # --- forward / inference ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor):
        """The FgBg logits and box deltas; the C-way classifiers run later, in `losses` and `predict_probs`.

        Args:
            x: (R, d) box-head features, or (R, ...) flattened to (R, d).

        Returns:
            (LDAScores(fgbg (R, 2), features (R, d)), proposal_deltas) as Detectron2's `bbox_pred` gives them.
        """
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        return LDAScores(fgbg=self.fgbg_score(x), features=x), self.bbox_pred(x)

    def fused_probabilities(self, scores: LDAScores) -> torch.Tensor:
        """(R, C+1): `p_fg * softmax(balanced)` for the classes, `1 - p_fg` for the background column.

        Args:
            scores: the first element of `forward`'s output.

        Returns:
            (R, C+1) probabilities summing to 1 per row, background last.
        """
        p_fg = F.softmax(scores.fgbg, dim=-1)[:, FOREGROUND : FOREGROUND + 1]
        return torch.cat([p_fg * F.softmax(self.balanced_score(scores.features), dim=-1), 1.0 - p_fg], dim=1)

    def predict_probs(self, predictions, proposals: List[Instances]):
        """`fused_probabilities`, through the score calibration when one is set (TEST.LT_CALIBRATION).

        Args:
            predictions: (LDAScores, proposal_deltas), the outputs of `forward`.
            proposals: the proposals of each image, R in all.

        Returns:
            One [R_i, C+1] tensor of class probabilities per image, background last.
        """
        return per_image_probabilities(self, self.fused_probabilities(predictions[0]), proposals)

    # --- losses -------------------------------------------------------------------------------------
    def _balanced_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.balanced_score(features if self.lda.balanced_feature_grad else features.detach())

    @staticmethod
    def _fgbg_targets(is_fg: torch.Tensor) -> torch.Tensor:
        return torch.where(is_fg, FOREGROUND, BACKGROUND)

    def losses(
        self, predictions, proposals: List[Instances], roi_weights: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """The LDA loss terms (module docstring) and box regression.

        Args:
            predictions: (LDAScores, proposal_deltas), the outputs of `forward`.
            proposals: the sampled RoIs with `gt_classes`, `proposal_boxes` and `gt_boxes`.
            roi_weights: None (`per_example` is False).

        Returns:
            {"loss_fgbg", "loss_cls_unbalanced", "loss_cls_balanced", "loss_lda_intra", "loss_lda_inter",
            "loss_box_reg"}.
        """
        reject_roi_weights(self, roi_weights, "the divergence terms and a_t are batch-level")
        scores, proposal_deltas = predictions
        gt_classes = gt_classes_of(proposals, proposal_deltas.device)
        is_fg = gt_classes < self.num_classes
        num_fg = int(is_fg.sum())
        fgbg_targets = self._fgbg_targets(is_fg)
        loss_fgbg = cross_entropy(scores.fgbg, fgbg_targets, reduction="mean")
        # Logged with one read-back at the end (put_scalars): a device sync per value would stall the GPU.
        logged: Dict[str, object] = {}
        if gt_classes.numel():
            fgbg_pred = scores.fgbg.detach().argmax(dim=1)
            logged["lda/fgbg_accuracy"] = (fgbg_pred == fgbg_targets).float().mean()
        if num_fg > 0:
            y, x = gt_classes[is_fg], scores.features[is_fg]
            logits_u, logits_b = self.unbalanced_score(x), self._balanced_logits(x)
            normaliser = gt_classes.numel() if self.lda.unbalanced_norm == "sampled" else None
            out = self.lda_loss(
                logits_u, logits_b, self.projection(x), y, update_balancer=self.training, normaliser=normaliser
            )
            loss_u, loss_b, intra, inter = out.terms
            logged.update(
                {
                    "lda/acc_unbalanced": out.acc_unbalanced,
                    "lda/acc_balanced": out.acc_balanced,
                    "lda/acc_gap": out.acc_unbalanced - out.acc_balanced,
                    # Detectron2's name for the foreground classification accuracy, as the stock head logs it.
                    "fast_rcnn/fg_cls_accuracy": out.acc_balanced / 100.0,
                }
            )
        else:
            # No foreground RoI: the foreground terms are zero; every classifier stays in the graph (no NaN,
            # no parameter without a gradient under DDP).
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            loss_u = loss_b = intra = inter = zero
            if self.lda_loss.divergence_reduce is not None:  # a collective: join the other ranks' centres
                empty = self.lda_loss.divergence(self.projection(scores.features[:0]), gt_classes[:0], self.num_classes)
                intra, inter = (t + zero for t in empty)
            if self.training:  # the counts are summed over ranks: this rank adds zeros, it must not skip
                self.lda_loss.update_balancer_empty()
        alpha = float(self.risk_balancer.alpha)
        # L_b and the gathered divergence are terms of the global batch: DDP averages gradients over ranks, so
        # their gradients are scaled by the world size (one process with the whole batch gets the same gradient).
        world = get_world_size()
        global_terms = lt_losses.LDATerms(
            loss_u,
            scale_gradient(loss_b, world),
            *(scale_gradient(t, world if self.lda_loss.divergence_reduce is not None else 1) for t in (intra, inter)),
        )
        weighted = self.lda_loss.weighted(global_terms, alpha)

        raw = {"fgbg": loss_fgbg, "unbalanced": loss_u, "balanced": loss_b, "intra": intra, "inter": inter}
        put_scalars(
            **logged,
            **{f"lda/raw_{k}": v.detach() for k, v in raw.items()},
            **{"lda/alpha": alpha, "lt/fg_fraction": num_fg / max(gt_classes.numel(), 1)},
        )
        return {
            "loss_fgbg": loss_fgbg,
            "loss_cls_unbalanced": weighted["unbalanced"],
            "loss_cls_balanced": weighted["balanced"],
            "loss_lda_intra": weighted["intra"],
            "loss_lda_inter": weighted["inter"],
            "loss_box_reg": regression_loss(self, proposal_deltas, proposals, gt_classes),
        }

    # --- loading a stock Detectron2 checkpoint -------------------------------------------------------
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # A stock checkpoint has `cls_score` (C+1 rows, background last) and none of our classifiers: start
        # them from it. The children read `state_dict` after this call, so the converted keys load normally.
        stock_w, stock_b = prefix + "cls_score.weight", prefix + "cls_score.bias"
        if stock_w in state_dict and prefix + "balanced_score.weight" not in state_dict:
            self._convert_stock_classifier(state_dict, prefix, state_dict.pop(stock_w), state_dict.pop(stock_b, None))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _convert_stock_classifier(self, state_dict, prefix: str, weight: torch.Tensor, bias) -> None:
        num_classes = self.num_classes
        if weight.shape != (num_classes + 1, self.balanced_score.in_features):
            # Different class count or feature size: nothing to start from; report it as unexpected.
            state_dict[prefix + "cls_score.weight"] = weight
            if bias is not None:
                state_dict[prefix + "cls_score.bias"] = bias
            return
        weight = torch.as_tensor(weight)
        bias = torch.zeros(num_classes + 1, dtype=weight.dtype) if bias is None else torch.as_tensor(bias)
        fg_w, fg_b = weight[:num_classes], bias[:num_classes]
        for name in ("unbalanced_score", "balanced_score"):
            state_dict[f"{prefix}{name}.weight"] = fg_w.clone()
            state_dict[f"{prefix}{name}.bias"] = fg_b.clone()
            self.initialised_from_stock += [
                (f"{prefix}{name}.weight", f"{prefix}cls_score.weight[:{num_classes}]"),
                (f"{prefix}{name}.bias", f"{prefix}cls_score.bias[:{num_classes}]"),
            ]
        # FgBg: background row as in the stock classifier; the foreground logit log sum_c exp(z_c) is
        # approximated linearly by mean_c z_c + log C (exact when the class logits are equal).
        fgbg_w = torch.stack([fg_w.mean(dim=0), weight[num_classes]])
        fgbg_b = torch.stack([fg_b.mean() + math.log(num_classes), bias[num_classes]])
        state_dict[prefix + "fgbg_score.weight"] = fgbg_w
        state_dict[prefix + "fgbg_score.bias"] = fgbg_b
        self.initialised_from_stock += [
            (prefix + "fgbg_score.weight", f"[mean of {prefix}cls_score.weight[:{num_classes}], background row]"),
            (prefix + "fgbg_score.bias", "[mean of the class biases + log C, background bias]"),
        ]

    # --- state that survives resume -----------------------------------------------------------------
    def get_extra_state(self) -> torch.Tensor:
        """The risk balancer's state, saved in the checkpoint (`balancer_state_to_tensor`)."""
        return balancer_state_to_tensor(self.risk_balancer)

    def set_extra_state(self, state) -> None:
        """Restore the risk balancer from a checkpoint.

        Args:
            state: a tensor from `get_extra_state`.
        """
        balancer_state_from_tensor(self.risk_balancer, state)


def balancer_state_to_tensor(balancer) -> torch.Tensor:
    """RiskBalancer state as one fixed-shape float64 tensor `[gamma, window, n, acc_u (window), acc_b (window)]`.

    Detectron2's checkpointer only accepts tensors, and compares shapes: a fixed shape (given the window)
    lets a checkpoint of the same config load, and a changed window be reported as a shape mismatch.

    Args:
        balancer: a `RiskBalancer`.

    Returns:
        (3 + 2 * window,) float64 tensor; unfilled history slots are 0.
    """
    state = balancer.state_dict()
    window, num = int(state["window"]), len(state["acc_unbalanced"])
    out = torch.zeros(3 + 2 * window, dtype=torch.float64)
    out[0], out[1], out[2] = float(state["gamma"]), window, num
    out[3 : 3 + num] = torch.tensor(state["acc_unbalanced"], dtype=torch.float64)
    out[3 + window : 3 + window + num] = torch.tensor(state["acc_balanced"], dtype=torch.float64)
    return out


def balancer_state_from_tensor(balancer, state: torch.Tensor) -> None:
    """Inverse of `balancer_state_to_tensor`.

    Args:
        balancer: the `RiskBalancer` to restore, in place.
        state: a tensor from `balancer_state_to_tensor`.
    """
    state = torch.as_tensor(state, dtype=torch.float64).cpu()
    window, num = int(state[1]), int(state[2])
    if state.shape != (3 + 2 * window,) or not 0 <= num <= window:
        raise ValueError(
            f"The LDA risk-balancer state in the checkpoint is malformed (shape {tuple(state.shape)}); "
            "it must come from LDABoxPredictor.get_extra_state."
        )
    balancer.load_state_dict(
        {
            "gamma": float(state[0]),
            "window": window,
            "acc_unbalanced": state[3 : 3 + num].tolist(),
            "acc_balanced": state[3 + window : 3 + window + num].tolist(),
        }
    )
