"""The field's long-tail box classifiers beside the source papers' heads: Seesaw loss and EQLv2.

Both keep Detectron2's box regression and `fast_rcnn_inference`; the loss math is `lt_detectron.losses` (`seesaw_loss`,
`EQLv2Loss`). Their running statistics (Seesaw's cumulative class counts, EQLv2's gradient sums) are persistent
buffers, summed over processes every step, so every rank holds the same values and a checkpoint resumes exactly.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances
from torch import nn
from torch.nn import functional as F

from lt_detectron import losses as lt_losses
from lt_detectron.utils.distributed import all_reduce_sum

from .box_predictors import BOX_PREDICTOR_REGISTRY
from .calibration import per_image_probabilities
from .predictor_utils import (
    event_storage_active,
    gt_classes_of,
    put_scalars,
    regression_loss,
    reject_roi_weights,
    reject_stock_loss_options,
    weighted_mean,
)

__all__ = ["SeesawBoxPredictor", "EQLv2BoxPredictor"]

_SEESAW = lt_losses.SEESAW_DEFAULTS
_EQLV2 = lt_losses.EQLV2_DEFAULTS


def _log_foreground_fraction(gt_classes: torch.Tensor, num_classes: int) -> None:
    if gt_classes.numel():
        put_scalars(**{"lt/fg_fraction": (gt_classes < num_classes).float().mean()})


@BOX_PREDICTOR_REGISTRY.register("seesaw")
class SeesawBoxPredictor(FastRCNNOutputLayers):
    """ "seesaw": Seesaw loss (Wang et al., CVPR 2021, arXiv:2008.10032) with its C+2 classifier.

    `cls_score` has C+2 outputs: C class logits, then a (foreground, background) pair. Training: a plain CE of the pair
    on every sampled RoI plus the Seesaw CE of the class logits on foreground RoIs, both divided by the number of
    sampled RoIs (the public implementation's normaliser); per-RoI weights (`roi_weights`) weight both. The cumulative
    per-class foreground counts N include the current batch (a meta step, which LTROIHeads runs before `losses`, sees
    them without it). Inference: p_fg * softmax(classes), background p_bg.
    """

    per_example = True

    @configurable
    def __init__(
        self, input_shape: ShapeSpec, *, p: float = _SEESAW.p, q: float = _SEESAW.q, eps: float = _SEESAW.eps, **kwargs
    ):
        """
        Args:
            input_shape: the box head's output shape.
            p: mitigation exponent (MODEL.LT.SEESAW.P).
            q: compensation exponent (MODEL.LT.SEESAW.Q).
            eps: floor of the true class's probability in the compensation ratio (MODEL.LT.SEESAW.EPS).
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        in_dim = self.cls_score.in_features
        self.cls_score = nn.Linear(in_dim, self.num_classes + 2)
        nn.init.normal_(self.cls_score.weight, std=0.01)  # as Detectron2 initialises cls_score
        nn.init.constant_(self.cls_score.bias, 0.0)
        self.p, self.q, self.eps = float(p), float(q), float(eps)
        # Global counts (summed over processes) in float64: exact far beyond LVIS's foreground RoIs per schedule.
        self.register_buffer("cumulative_counts", torch.zeros(self.num_classes, dtype=torch.float64))

    @classmethod
    def from_config(cls, cfg, input_shape):
        reject_stock_loss_options(cfg, "seesaw")
        ret = super().from_config(cfg, input_shape)
        seesaw = cfg.MODEL.LT.SEESAW
        ret.update(p=seesaw.P, q=seesaw.Q, eps=seesaw.EPS)
        return ret

    def _split(self, scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return scores[:, : self.num_classes], scores[:, self.num_classes :]

    def fused_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """(R, C+1): `p_fg * softmax(classes)`, background column `p_bg`.

        Args:
            scores: (R, C+2) outputs of `cls_score`.

        Returns:
            (R, C+1) probabilities summing to 1 per row, background last.
        """
        classes, objectness = self._split(scores)
        p_obj = F.softmax(objectness, dim=-1)
        return torch.cat([F.softmax(classes, dim=-1) * p_obj[:, :1], p_obj[:, 1:]], dim=1)

    def predict_probs(self, predictions, proposals: List[Instances]):
        """`fused_probabilities`, through the score calibration when one is set (TEST.LT_CALIBRATION).

        Args:
            predictions: (scores [R, C+2], proposal_deltas), the outputs of `forward`.
            proposals: the proposals of each image, R in all.

        Returns:
            One [R_i, C+1] tensor of class probabilities per image, background last.
        """
        return per_image_probabilities(self, self.fused_probabilities(predictions[0]), proposals)

    def accumulate_counts(self, gt_classes: torch.Tensor) -> None:
        """Add this step's foreground RoIs per class, summed over processes (a collective in multi-process runs).

        Args:
            gt_classes: Tensor[R] of the sampled RoIs' classes (C: background, not counted).
        """
        fg = gt_classes[gt_classes < self.num_classes]
        batch = torch.zeros_like(self.cumulative_counts).index_add_(
            0, fg, torch.ones_like(fg, dtype=self.cumulative_counts.dtype)
        )
        self.cumulative_counts += all_reduce_sum(batch)

    def per_roi_classification_loss(self, scores: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
        """CE of the (foreground, background) pair on every RoI plus, on foreground RoIs, the Seesaw CE; its mean over
        RoIs is `loss_cls_objectness + loss_cls_classes`. Reads the cumulative counts as they are.

        Args:
            scores: Tensor[R, C+2] of class logits and the (foreground, background) pair.
            gt_classes: Tensor[R] of classes (C: background).

        Returns:
            Tensor[R] of per-RoI losses (before the loss weight).
        """
        is_fg = gt_classes < self.num_classes
        per_roi, seesaw = self._classification_terms(scores, gt_classes, "none")
        return per_roi.index_put((is_fg.nonzero()[:, 0],), seesaw, accumulate=True)

    def _classification_terms(self, scores: torch.Tensor, gt_classes: torch.Tensor, reduction: str):
        """(CE of the objectness pair over all RoIs, Seesaw CE of the class logits over the foreground RoIs)."""
        classes, objectness = self._split(scores)
        is_fg = gt_classes < self.num_classes
        objectness_loss = F.cross_entropy(objectness, (~is_fg).long(), reduction=reduction)
        counts = self.cumulative_counts.to(scores.dtype)
        seesaw = lt_losses.seesaw_loss(
            classes[is_fg], gt_classes[is_fg], counts, p=self.p, q=self.q, eps=self.eps, reduction=reduction
        )
        return objectness_loss, seesaw

    def losses(
        self, predictions, proposals: List[Instances], roi_weights: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """The two classification terms (sums over RoIs / number of sampled RoIs) and box regression.

        Args:
            predictions: (scores [R, C+2], proposal_deltas), the outputs of `forward`.
            proposals: the sampled RoIs with `gt_classes`, `proposal_boxes` and `gt_boxes`.
            roi_weights: Tensor[R] of per-RoI weights of both classification terms; None: unweighted.

        Returns:
            {"loss_cls_objectness", "loss_cls_classes", "loss_box_reg"}.
        """
        scores, proposal_deltas = predictions
        gt_classes = gt_classes_of(proposals, scores.device)
        num_classes = self.num_classes
        if self.training:
            self.accumulate_counts(gt_classes)
        _log_foreground_fraction(gt_classes, num_classes)
        if event_storage_active() and gt_classes.numel():
            with torch.no_grad():  # Detectron2's accuracy stats on the fused C+1 scores
                _log_classification_stats(self.fused_probabilities(scores).clamp_min(1e-30).log(), gt_classes)
        if roi_weights is None:  # the losses' own sums over the sampled RoIs, divided by their number
            normaliser = max(gt_classes.numel(), 1)
            loss_objectness, loss_classes = (
                t / normaliser for t in self._classification_terms(scores, gt_classes, "sum")
            )
        else:  # the same means with per-RoI weights; the class term is 0 on background RoIs
            objectness, classes = self._classification_terms(scores, gt_classes, "none")
            fg_rows = (gt_classes < num_classes).nonzero()[:, 0]
            per_roi_classes = torch.zeros_like(objectness).index_put((fg_rows,), classes)
            loss_objectness = weighted_mean(objectness, roi_weights)
            loss_classes = weighted_mean(per_roi_classes, roi_weights)
        weight = self.loss_weight.get("loss_cls", 1.0)
        return {
            "loss_cls_objectness": loss_objectness * weight,
            "loss_cls_classes": loss_classes * weight,
            "loss_box_reg": regression_loss(self, proposal_deltas, proposals, gt_classes),
        }


@BOX_PREDICTOR_REGISTRY.register("eqlv2")
class EQLv2BoxPredictor(FastRCNNOutputLayers):
    """ "eqlv2": EQLv2 (Tan et al., CVPR 2021, arXiv:2012.08548): sigmoid over the C+1 columns (background last) with
    gradient-driven positive/negative weights. Inference: sigmoid(z_c) * (1 - sigmoid(z_background)).

    The loss has state (the accumulated gradient statistics) updated on every training call, so it is not a mean of
    independent per-RoI losses (`per_example` False: `losses` rejects `roi_weights`, meta-weighting refuses it).
    """

    per_example = False
    scores_sum_to_one = False

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        gamma: float = _EQLV2.gamma,
        mu: float = _EQLV2.mu,
        alpha: float = _EQLV2.alpha,
        **kwargs,
    ):
        """
        Args:
            input_shape: the box head's output shape.
            gamma: steepness of EQLv2's weight mapping f (MODEL.LT.EQLV2.GAMMA).
            mu: centre of the mapping f (MODEL.LT.EQLV2.MU).
            alpha: scale of the positive weight (MODEL.LT.EQLV2.ALPHA).
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        # Statistics summed over processes every step (a no-op in one process); persistent: saved in checkpoints.
        self.eqlv2 = lt_losses.EQLv2Loss(self.num_classes, gamma=gamma, mu=mu, alpha=alpha, reduce=all_reduce_sum)

    @classmethod
    def from_config(cls, cfg, input_shape):
        reject_stock_loss_options(cfg, "eqlv2")
        ret = super().from_config(cfg, input_shape)
        eqlv2 = cfg.MODEL.LT.EQLV2
        ret.update(gamma=eqlv2.GAMMA, mu=eqlv2.MU, alpha=eqlv2.ALPHA)
        return ret

    def predict_probs(self, predictions, proposals: List[Instances]):
        """sigmoid(z_c) * (1 - sigmoid(z_background)) for the classes, sigmoid(z_background) for the background.

        Args:
            predictions: (scores [R, C+1], proposal_deltas), the outputs of `forward`.
            proposals: the proposals of each image, R in all.

        Returns:
            One [R_i, C+1] tensor of class scores per image, background last (rows need not sum to 1).
        """
        sig = predictions[0].sigmoid()
        probs = torch.cat([sig[:, :-1] * (1.0 - sig[:, -1:]), sig[:, -1:]], dim=1)
        return probs.split([len(p) for p in proposals], dim=0)

    def losses(
        self, predictions, proposals: List[Instances], roi_weights: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """EQLv2's loss and box regression (`roi_weights` must be None: the class docstring).

        Args:
            predictions: (scores [R, C+1], proposal_deltas), the outputs of `forward`.
            proposals: the sampled RoIs with `gt_classes`, `proposal_boxes` and `gt_boxes`.
            roi_weights: None.

        Returns:
            {"loss_cls", "loss_box_reg"}.
        """
        reject_roi_weights(self, roi_weights, "its weights come from gradient statistics of all RoIs so far")
        scores, proposal_deltas = predictions
        gt_classes = gt_classes_of(proposals, scores.device)
        _log_foreground_fraction(gt_classes, self.num_classes)
        if event_storage_active():
            _log_classification_stats(scores.detach(), gt_classes)
        # Every rank calls the loss each step (its statistics update is a collective), also with no RoI.
        loss_cls = self.eqlv2(scores, gt_classes)
        return {
            "loss_cls": loss_cls * self.loss_weight.get("loss_cls", 1.0),
            "loss_box_reg": regression_loss(self, proposal_deltas, proposals, gt_classes),
        }
