"""Box predictors for `LTROIHeads`: Detectron2's FastRCNNOutputLayers with a long-tail classification loss.

Each predictor keeps Detectron2's box regression (`box_reg_loss`, `predict_boxes`) and inference
(`fast_rcnn_inference`) and changes only the C+1-way classification loss and, where Hong et al., CVPR 2021,
arXiv:2012.00321 define them, the inference scores. The loss math lives in `lt_detectron.losses`; this module only
wires counts, priors and the background class (see `priors.py` and docs/methods.md#the-background-class).

Per-RoI weights (LTROIHeads' `roi_reweighter`, e.g. meta-weighting) are an input of the loss. A predictor whose
classification loss is a mean of per-RoI losses declares `per_example = True` and has
  losses(predictions, proposals, roi_weights=None)       roi_weights Tensor[R]: loss_cls = mean_i w_i L_i
  per_roi_classification_loss(scores, gt_classes) -> [R]  the L_i (the meta step differentiates them)
The others (`per_example = False`: EQLv2, LDA) raise on roi_weights.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances
from torch.nn import functional as F

from lt_detectron import losses as lt_losses
from lt_detectron.layers import CosineLinear
from lt_detectron.registry import Registry

from .calibration import per_image_probabilities
from .class_counts import read_class_counts
from .predictor_utils import (
    current_iteration,
    event_storage_active,
    gt_classes_of,
    put_scalars,
    regression_loss,
    reject_stock_loss_options,
    weighted_mean,
)
from .priors import (
    detection_source_prior,
    detection_target_prior,
    prior_counts,
    resolve_background_prior,
    weights_from_counts,
)

__all__ = [
    "BOX_PREDICTOR_REGISTRY",
    "StockBoxPredictor",
    "LTBoxPredictor",
    "CBBoxPredictor",
    "FocalBoxPredictor",
    "CBFocalBoxPredictor",
    "LDAMBoxPredictor",
    "PCSoftmaxBoxPredictor",
    "BalancedSoftmaxBoxPredictor",
    "LADEBoxPredictor",
    "CosineLinear",
]

logger = logging.getLogger(__name__)

BOX_PREDICTOR_REGISTRY = Registry("LT_BOX_PREDICTOR")
BOX_PREDICTOR_REGISTRY.__doc__ = """
Box predictors of LTROIHeads, by MODEL.LT.BOX_CLASSIFIER. A registered object is called as `obj(cfg, input_shape)`
(a Detectron2 `@configurable` class) and returns a FastRCNNOutputLayers. Add one with
`@BOX_PREDICTOR_REGISTRY.register("name")`; to be meta-weighted it also takes `roi_weights` and exposes
`per_example` and `per_roi_classification_loss` (see this module's docstring).
"""


@BOX_PREDICTOR_REGISTRY.register("softmax")
class StockBoxPredictor(FastRCNNOutputLayers):
    """BOX_CLASSIFIER "softmax": Detectron2's FastRCNNOutputLayers unchanged, plus per-RoI weights and losses.

    Same parameters and state_dict keys as the stock class, so stock checkpoints load as they are;
    USE_SIGMOID_CE and USE_FED_LOSS keep working.
    """

    per_example = True

    @property
    def scores_sum_to_one(self) -> bool:
        """Whether the C+1 inference scores sum to 1 (softmax, not USE_SIGMOID_CE): score calibration needs it."""
        return not self.use_sigmoid_ce

    def predict_probs(self, predictions, proposals: List[Instances]) -> Tuple[torch.Tensor, ...]:
        """Detectron2's scores, through the score calibration when one is set (TEST.LT_CALIBRATION).

        Args:
            predictions: (scores [R, C+1], proposal_deltas), the outputs of `forward`.
            proposals: the proposals of each image, R in all.

        Returns:
            One [R_i, C+1] tensor of class probabilities per image, background last.
        """
        probs = super().predict_probs(predictions, proposals)
        if getattr(self, "score_calibration", None) is None:
            return probs
        return per_image_probabilities(self, torch.cat(probs), proposals)

    def losses(
        self, predictions, proposals: List[Instances], roi_weights: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """Detectron2's losses; with `roi_weights`, `loss_cls` is the weighted mean of `per_roi_classification_loss`.

        Args:
            predictions: the outputs of `forward`.
            proposals: the sampled RoIs with `gt_classes`, `proposal_boxes` and `gt_boxes`.
            roi_weights: Tensor[R] of per-RoI weights of the classification loss; None: Detectron2's loss unchanged.

        Returns:
            {"loss_cls", "loss_box_reg"}, each times its `loss_weight`.
        """
        losses = super().losses(predictions, proposals)
        if roi_weights is not None:  # replaces the unweighted mean; regression and logged stats stay Detectron2's
            per_roi = self.per_roi_classification_loss(predictions[0], gt_classes_of(proposals, predictions[0].device))
            losses["loss_cls"] = weighted_mean(per_roi, roi_weights) * self.loss_weight.get("loss_cls", 1.0)
        return losses

    def per_roi_classification_loss(self, scores: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
        """Per-RoI view of the stock loss: its mean over RoIs equals `losses()["loss_cls"]`.

        Args:
            scores: Tensor[R, C+1] of class logits.
            gt_classes: Tensor[R] of classes (C: background).

        Returns:
            Tensor[R] of unreduced losses (sigmoid CE / federated loss: summed over the classes).
        """
        if not self.use_sigmoid_ce:
            return F.cross_entropy(scores, gt_classes, reduction="none")
        num_classes = scores.shape[1] - 1
        target = F.one_hot(gt_classes, num_classes + 1)[:, :num_classes].to(scores.dtype)
        per_class = F.binary_cross_entropy_with_logits(scores[:, :-1], target, reduction="none")
        if self.use_fed_loss:
            fed_classes = self.get_fed_loss_classes(
                gt_classes, self.fed_loss_num_classes, num_classes, self.fed_loss_cls_weights
            )
            mask = scores.new_zeros(num_classes + 1)
            mask[fed_classes] = 1
            per_class = per_class * mask[:num_classes]
        return per_class.sum(dim=1)


class LTBoxPredictor(FastRCNNOutputLayers):
    """Base of the C+1-way long-tail box classifiers (background = class C).

    Subclasses implement `_classification_loss(scores, gt_classes, reduction)` with `lt_detectron.losses`
    and may override `predict_probs`. `counts` are the foreground training counts n_c (length C).
    """

    per_example = True
    # Whether MODEL.LT.TEST_TARGET_PRIOR changes this head's inference scores (Hong et al. 2021 eq. 7, 17).
    uses_target_prior = False

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        class_counts,
        background_prior: float = 0.75,
        zero_count_policy: str = "error",
        test_target_prior: str = "uniform",
        **kwargs,
    ):
        """
        Args:
            input_shape: the box head's output shape.
            class_counts: per-class training counts n_c of the C foreground classes (from DATASETS.TRAIN, counted
                as MODEL.LT.CLASS_COUNT_SOURCE says).
            background_prior: b, the background's share of the C+1 source prior (MODEL.LT.BACKGROUND_PRIOR; < 0
                there: 1 - MODEL.ROI_HEADS.POSITIVE_FRACTION).
            zero_count_policy: "error" or "warn" for a class with n_c = 0 (MODEL.LT.ZERO_COUNT_POLICY).
            test_target_prior: the foreground target prior at inference (MODEL.LT.TEST_TARGET_PRIOR): "uniform",
                "source", a json path or the numbers (`lt_detectron.losses.parse_target_prior`); only heads with
                `uses_target_prior` use it.
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        if counts.shape != (self.num_classes,):
            raise ValueError(
                f"{type(self).__name__}: class_counts has shape {tuple(counts.shape)} but NUM_CLASSES is "
                f"{self.num_classes}; pass one training count per foreground class."
            )
        self.background_prior = float(background_prior)
        self.zero_count_policy = zero_count_policy
        # Derived from the config at build time (not persistent): a checkpoint never overrides them.
        self.register_buffer("class_counts", counts.float(), persistent=False)
        source = detection_source_prior(counts, self.background_prior)
        self.register_buffer("source_prior", source, persistent=False)
        self.register_buffer("log_target_prior", torch.zeros_like(source), persistent=False)
        self.set_target_prior(test_target_prior)
        if test_target_prior != "uniform" and not self.uses_target_prior:
            logger.warning(
                f"MODEL.LT.TEST_TARGET_PRIOR = {test_target_prior!r} has no effect on {type(self).__name__}; "
                "only 'pc_softmax', 'balanced_softmax' and 'lade' use a target prior (docs/methods.md#pc-softmax)."
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        reject_stock_loss_options(cfg, cfg.MODEL.LT.BOX_CLASSIFIER)
        ret = super().from_config(cfg, input_shape)
        ret.update(
            class_counts=read_class_counts(cfg),
            background_prior=resolve_background_prior(cfg),
            zero_count_policy=cfg.MODEL.LT.ZERO_COUNT_POLICY,
            test_target_prior=cfg.MODEL.LT.TEST_TARGET_PRIOR,
        )
        return ret

    def set_target_prior(self, spec: str) -> None:
        """Switch the inference target prior ("uniform", "source" or a json path); see priors.py.

        Args:
            spec: the foreground target prior, as MODEL.LT.TEST_TARGET_PRIOR; the background keeps b.
        """
        prior = detection_target_prior(spec, self.class_counts.double(), self.background_prior)
        self.log_target_prior.copy_(prior.log().to(self.log_target_prior))
        self.target_prior_spec = spec

    def foreground_class_weights(self, kind: str = "effective_number", beta: Optional[float] = None):
        """C+1 weights: foreground `class_weights(n)` (normalised to sum C), background 1.0.

        Args:
            kind: the weighting of `lt_detectron.losses.class_weights`.
            beta: effective-number beta; None = (N - 1) / N.

        Returns:
            (C+1,) float32 weights; classes with n_c = 0 get 0 under the "warn" zero-count policy.
        """
        fg = weights_from_counts(self.class_counts, self.zero_count_policy, kind=kind, beta=beta)
        return torch.cat([fg, fg.new_ones(1)]).float()

    # --- losses -------------------------------------------------------------------------------------
    def _classification_loss(self, scores: torch.Tensor, gt_classes: torch.Tensor, reduction: str):
        raise NotImplementedError

    def per_roi_classification_loss(self, scores: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
        """Tensor[R]: the unreduced classification loss of each RoI (scores [R, C+1], gt_classes [R]).

        Args:
            scores: Tensor[R, C+1] of class logits.
            gt_classes: Tensor[R] of classes (C: background).

        Returns:
            Tensor[R] of per-RoI losses; their mean is the unweighted `loss_cls` (before its loss weight).
        """
        return self._classification_loss(scores, gt_classes, "none")

    def losses(
        self, predictions, proposals: List[Instances], roi_weights: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """The per-RoI classification loss (mean, or `roi_weights`-weighted mean), extra terms and box regression.

        Args:
            predictions: (scores [R, C+1], proposal_deltas), the outputs of `forward`.
            proposals: the sampled RoIs with `gt_classes`, `proposal_boxes` and `gt_boxes`.
            roi_weights: Tensor[R] of per-RoI weights of `loss_cls` (not of the batch-level `_extra_losses`).

        Returns:
            {"loss_cls", *extra terms, "loss_box_reg"}.
        """
        scores, proposal_deltas = predictions
        gt_classes = gt_classes_of(proposals, scores.device)
        if event_storage_active():  # Detectron2's accuracy / false-negative stats, as the stock head logs them
            _log_classification_stats(scores.detach(), gt_classes)
        if gt_classes.numel():
            fg_fraction = (gt_classes < self.num_classes).float().mean()
            put_scalars(**{"lt/fg_fraction": fg_fraction})
        if scores.shape[0] == 0:  # no RoIs at all: keep the graph connected, no NaN from an empty mean
            loss_cls = scores.sum() * 0.0
        elif roi_weights is not None:
            loss_cls = weighted_mean(self._classification_loss(scores, gt_classes, "none"), roi_weights)
        else:
            loss_cls = self._classification_loss(scores, gt_classes, "mean")
        return {
            "loss_cls": loss_cls * self.loss_weight.get("loss_cls", 1.0),
            **self._extra_losses(scores, gt_classes),
            "loss_box_reg": regression_loss(self, proposal_deltas, proposals, gt_classes),
        }

    def _extra_losses(self, scores: torch.Tensor, gt_classes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Batch-level loss terms beside the per-RoI `loss_cls` (none by default)."""
        return {}

    # --- inference ----------------------------------------------------------------------------------
    def class_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """The head's inference scores before calibration (here the softmax; subclasses change it).

        Args:
            scores: Tensor[R, C+1] of class logits.

        Returns:
            Tensor[R, C+1] of class scores, background last.
        """
        return F.softmax(scores, dim=-1)

    def predict_probs(self, predictions, proposals: List[Instances]) -> Tuple[torch.Tensor, ...]:
        """`class_probabilities`, through the score calibration when one is set (TEST.LT_CALIBRATION).

        Args:
            predictions: (scores [R, C+1], proposal_deltas), the outputs of `forward`.
            proposals: the proposals of each image, R in all.

        Returns:
            One [R_i, C+1] tensor of class scores per image, background last.
        """
        return per_image_probabilities(self, self.class_probabilities(predictions[0]), proposals)


@BOX_PREDICTOR_REGISTRY.register("cb")
class CBBoxPredictor(LTBoxPredictor):
    """ "cb": effective-number class-balanced softmax CE (Cui et al., CVPR 2019, arXiv:1901.05555); background
    weight 1 (docs/methods.md#the-background-class)."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, cb_beta: Optional[float] = None, **kwargs):
        """
        Args:
            input_shape: the box head's output shape.
            cb_beta: effective-number beta (MODEL.LT.CB.BETA); None = (N - 1) / N.
            kwargs: `LTBoxPredictor`'s arguments.
        """
        super().__init__(input_shape, **kwargs)
        self.register_buffer("class_weight", self.foreground_class_weights(beta=cb_beta), persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["cb_beta"] = cfg.MODEL.LT.CB.BETA
        return ret

    def _classification_loss(self, scores, gt_classes, reduction):
        return lt_losses.cb_cross_entropy(scores, gt_classes, self.class_weight, reduction=reduction)


@BOX_PREDICTOR_REGISTRY.register("focal")
class FocalBoxPredictor(LTBoxPredictor):
    """ "focal": focal loss (Lin et al., ICCV 2017, arXiv:1708.02002) on the C+1 classes; "cb_focal" adds CB weights."""

    class_balanced = False

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        gamma: float = lt_losses.FOCAL_DEFAULTS.gamma,
        form: str = lt_losses.FOCAL_DEFAULTS.form,
        cb_beta=None,
        **kwargs,
    ):
        """
        Args:
            input_shape: the box head's output shape.
            gamma: focusing parameter (MODEL.LT.FOCAL.GAMMA).
            form: "softmax" or "sigmoid" (MODEL.LT.FOCAL.FORM); the sigmoid form scores classes independently.
            cb_beta: effective-number beta of the "cb_focal" weights (MODEL.LT.CB.BETA); None = (N - 1) / N.
                Unused by "focal".
            kwargs: `LTBoxPredictor`'s arguments.
        """
        super().__init__(input_shape, **kwargs)
        if form not in ("softmax", "sigmoid"):
            raise ValueError(f"MODEL.LT.FOCAL.FORM must be 'softmax' or 'sigmoid', got {form!r}.")
        self.gamma = gamma
        self.form = form
        weight = self.foreground_class_weights(beta=cb_beta) if self.class_balanced else None
        self.register_buffer("class_weight", weight, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(gamma=cfg.MODEL.LT.FOCAL.GAMMA, form=cfg.MODEL.LT.FOCAL.FORM, cb_beta=cfg.MODEL.LT.CB.BETA)
        return ret

    def _classification_loss(self, scores, gt_classes, reduction):
        return lt_losses.focal_loss(
            scores, gt_classes, gamma=self.gamma, weight=self.class_weight, form=self.form, reduction=reduction
        )

    @property
    def scores_sum_to_one(self) -> bool:
        """Whether the C+1 inference scores sum to 1 (the softmax form): score calibration needs it."""
        return self.form == "softmax"

    def class_probabilities(self, scores):
        # The sigmoid form trains one independent binary classifier per class (background column included).
        return scores.sigmoid() if self.form == "sigmoid" else F.softmax(scores, dim=-1)


@BOX_PREDICTOR_REGISTRY.register("cb_focal")
class CBFocalBoxPredictor(FocalBoxPredictor):
    """ "cb_focal": focal loss weighted by effective-number class weights (Cui et al. 2019)."""

    class_balanced = True


@BOX_PREDICTOR_REGISTRY.register("ldam")
class LDAMBoxPredictor(LTBoxPredictor):
    """ "ldam": LDAM margins on the foreground classes, background margin 0, optional DRW (Cao et al.,
    NeurIPS 2019, arXiv:1906.07413)."""

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        max_margin: float = lt_losses.LDAM_DEFAULTS.max_margin,
        scale: float = lt_losses.LDAM_DEFAULTS.scale,
        drw_start_iter: int = -1,
        drw_beta: float = lt_losses.LDAM_DEFAULTS.drw_beta,
        cosine_classifier: bool = lt_losses.LDAM_DEFAULTS.cosine_classifier,
        **kwargs,
    ):
        """
        Args:
            input_shape: the box head's output shape.
            max_margin: the largest foreground margin (MODEL.LT.LDAM.MAX_MARGIN).
            scale: the logit scale s, at training and inference (MODEL.LT.LDAM.SCALE).
            drw_start_iter: the iteration DRW starts at; < 0 = never (MODEL.LT.LDAM.DRW_START_ITER).
            drw_beta: effective-number beta of the DRW weights (MODEL.LT.LDAM.DRW_BETA).
            cosine_classifier: replace `cls_score` by a `CosineLinear` (MODEL.LT.LDAM.COSINE_CLASSIFIER).
            kwargs: `LTBoxPredictor`'s arguments.
        """
        super().__init__(input_shape, **kwargs)
        self.max_margin = max_margin
        self.scale = scale
        self.drw = lt_losses.DeferredReweighting(prior_counts(self.class_counts.cpu()), drw_start_iter, drw_beta)
        self.cosine_classifier = cosine_classifier
        if cosine_classifier:
            self.cls_score = CosineLinear(self.cls_score.in_features, self.num_classes + 1)
        # Foreground margins K / n_c^(1/4) (unseen classes count once, priors.prior_counts); background margin 0.
        fg_margins = lt_losses.ldam_margins(prior_counts(self.class_counts.cpu()), max_margin)
        self.register_buffer("margins", torch.cat([fg_margins, fg_margins.new_zeros(1)]).float(), persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ldam = cfg.MODEL.LT.LDAM
        ret.update(
            max_margin=ldam.MAX_MARGIN,
            scale=ldam.SCALE,
            drw_start_iter=ldam.DRW_START_ITER,
            drw_beta=ldam.DRW_BETA,
            cosine_classifier=ldam.COSINE_CLASSIFIER,
        )
        return ret

    @property
    def drw_start_iter(self) -> int:
        """The iteration DRW starts at (< 0: never)."""
        return self.drw.start

    @property
    def drw_beta(self) -> float:
        """The effective-number beta of the DRW weights."""
        return self.drw.beta

    def _drw_weight(self) -> Optional[torch.Tensor]:
        if not self.drw.enabled:
            return None
        fg = self.drw.weights(current_iteration())
        if fg is None:
            return None
        return torch.cat([fg.float(), fg.new_ones(1).float()]).to(self.class_counts.device)

    def _classification_loss(self, scores, gt_classes, reduction):
        return lt_losses.ldam_loss(
            scores,
            gt_classes,
            None,
            scale=self.scale,
            weight=self._drw_weight(),
            reduction=reduction,
            margins=self.margins,
        )

    def class_probabilities(self, scores):
        # Training sees s * z (margins only on the true class), so s * z is the logit at test time.
        return F.softmax(self.scale * scores, dim=-1)


@BOX_PREDICTOR_REGISTRY.register("pc_softmax")
class PCSoftmaxBoxPredictor(LTBoxPredictor):
    """ "pc_softmax": the stock softmax CE at training, PC Softmax at test (Hong et al. 2021 eq. 4-7).

    Same parameters as Detectron2's predictor, so a trained stock model (e.g. the baseline's model_final.pth)
    can be evaluated post hoc with MODEL.LT.BOX_CLASSIFIER pc_softmax and any TEST_TARGET_PRIOR.
    """

    uses_target_prior = True

    def _classification_loss(self, scores, gt_classes, reduction):
        return F.cross_entropy(scores, gt_classes, reduction=reduction)  # Detectron2's loss, unchanged

    def class_probabilities(self, scores):
        return lt_losses.pc_softmax(scores, self.source_prior, self.log_target_prior.exp())


@BOX_PREDICTOR_REGISTRY.register("balanced_softmax")
class BalancedSoftmaxBoxPredictor(LTBoxPredictor):
    """ "balanced_softmax": LADE-CE `CE(z + log p_s, y)` (Hong et al. 2021 eq. 18-19; Ren et al.,
    NeurIPS 2020, arXiv:2007.10740); target prior at test."""

    uses_target_prior = True

    def _classification_loss(self, scores, gt_classes, reduction):
        return lt_losses.balanced_softmax_loss(scores, gt_classes, self.source_prior, reduction=reduction)

    def class_probabilities(self, scores):
        # p_t(y|x) ∝ p_t(y) exp(z_y) (Hong et al. 2021 eq. 17): z is trained free of the source prior.
        return F.softmax(scores + self.log_target_prior, dim=-1)


@BOX_PREDICTOR_REGISTRY.register("lade")
class LADEBoxPredictor(BalancedSoftmaxBoxPredictor):
    """ "lade": L_LADE = LADE-CE + alpha * LADER (Hong et al. 2021 eq. 11-20); target prior at test.

    The two terms are separate losses, as Detectron2 keeps its loss terms: `loss_cls` is the per-RoI LADE-CE
    (so `per_example` holds and `roi_weights` weight it) and `loss_lader` = alpha * LADER, a batch-level
    regulariser. Their sum is `lt_detectron.losses.lade_loss`.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        alpha: float = lt_losses.LADE_DEFAULTS.alpha,
        lam: float = lt_losses.LADE_DEFAULTS.lam,
        importance: str = lt_losses.LADE_DEFAULTS.importance,
        **kwargs,
    ):
        """
        Args:
            input_shape: the box head's output shape.
            alpha: weight of `loss_lader` (MODEL.LT.LADE.ALPHA).
            lam: lambda of LADER's squared term (MODEL.LT.LADE.LAMBDA).
            importance: "label" or "column", see `lt_detectron.losses.lader` (MODEL.LT.LADE.IMPORTANCE).
            kwargs: `LTBoxPredictor`'s arguments.
        """
        super().__init__(input_shape, **kwargs)
        self.alpha = alpha
        self.lam = lam
        self.importance = importance

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        lade = cfg.MODEL.LT.LADE
        ret.update(alpha=lade.ALPHA, lam=lade.LAMBDA, importance=lade.IMPORTANCE)
        return ret

    def _extra_losses(self, scores, gt_classes):
        lader = lt_losses.lader(scores, gt_classes, self.source_prior, lam=self.lam, importance=self.importance)
        return {"loss_lader": self.alpha * lader}
