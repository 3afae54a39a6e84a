"""LDA: intra/inter-class divergence on projected features and the adaptive risk balancer (Peng et al.,
ACM MM 2021, arXiv:2110.02686)."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any, Callable, Dict, NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ._validation import ArrayLike, as_tensor_like, check_counts, class_histogram, on_host
from .class_weights import class_weights
from .reweighted import cb_cross_entropy


@dataclasses.dataclass(frozen=True)
class LDADefaults:
    """Paper defaults of LDA (Peng et al., "Long-tailed Distribution Adaptation", ACM MM 2021, arXiv:2110.02686).

    The authors' public defaults: lambda_u 1, lambda_b 2, lambda_d 1, margin 1, a Linear(d, 128) projection head,
    a risk-balancer window of 100 mini-batches and gamma 2.0 (ImageNet-LT). `alpha_ramp` "zero_filled" is the public
    code's accuracy window, which starts filled with zeros, so a_t grows as about (t/K)^gamma over the first K
    batches ("recorded" averages only the batches seen so far); `fixed_alpha` >= 0 replaces the adaptive a_t by a
    constant (the paper's grid-search control).

    Attributes:
        gamma: exponent of the risk balance a_t = max(0, A_u - A_b)^gamma (eq. 6).
        window: risk-balancer window K in mini-batches; <= 0 derives K from the counts (`LDALoss.from_defaults`).
        lambda_u: weight of L_u, the unbalanced classifier's cross-entropy.
        lambda_b: weight of a_t L_b, the balanced classifier's weighted cross-entropy.
        lambda_d: weight of L_intra + L_inter.
        margin: margin of L_inter (eq. 8).
        proj_head: projection head h, "linear" (d -> proj_dim) or "mlp" (d -> 512 -> proj_dim).
        proj_dim: output dimension of the projection head.
        pair_weights: weight the inter-class pairs of L_inter by w_c + w_c' (eq. 8).
        alpha_ramp: "zero_filled" or "recorded", as above.
        fixed_alpha: >= 0: a_t is this constant; < 0: the adaptive a_t.
        balanced_feature_grad: detection only: whether L_b's gradient reaches the shared box feature.
        unbalanced_norm: detection only: L_u's sum is divided by all sampled RoIs ("sampled") or by the
            foreground RoIs ("foreground").
    """

    gamma: float = 2.0
    window: int = 100
    lambda_u: float = 1.0
    lambda_b: float = 2.0
    lambda_d: float = 1.0
    margin: float = 1.0
    proj_head: str = "linear"
    proj_dim: int = 128
    pair_weights: bool = False
    alpha_ramp: str = "zero_filled"
    fixed_alpha: float = -1.0
    # Detection only. Whether L_b's gradient reaches the shared feature (the paper: all classifiers share it), and
    # what L_u's sum is divided by (the paper is silent; "sampled": all sampled RoIs, as Detectron2's loss).
    balanced_feature_grad: bool = True
    unbalanced_norm: str = "sampled"


ALPHA_RAMPS = ("zero_filled", "recorded")
LDA_DEFAULTS = LDADefaults()
# The paper's own detection recipe (its Appendix B, LVIS v1): two coefficients set to 1.5 and 0.1, read as gamma and
# lambda_d; the detection config tree and LDABoxPredictor take these. balanced_feature_grad False is a measured
# deviation (docs/methods.md#lda-box-head).
LDA_LVIS_DEFAULTS = dataclasses.replace(LDA_DEFAULTS, gamma=1.5, lambda_d=0.1, balanced_feature_grad=False)


def lda_divergence(
    features: torch.Tensor,
    targets: torch.Tensor,
    margin: float = LDA_DEFAULTS.margin,
    class_weights: ArrayLike | None = None,
    num_classes: int | None = None,
    reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(L_intra, L_inter)` of projected features f_i (Peng et al. 2021 eq. 7-8).

    L_intra: mean over classes with >= 2 samples of mean_i (1 - cos(mu_c, f_i)), mu_c the class centre.
    L_inter: mean over ordered pairs c != c' of classes in the batch of max(0, margin - (1 - cos(mu_c, mu_c'))),
    or with `class_weights` (indexed by class id) each pair weighted by (w_c + w_c') and normalised (eq. 8).
    Terms without a class (pair) to average over are 0.
    `num_classes` (ids lie in [0, num_classes)) lets an accelerator work on all classes with absent ones masked,
    so that no call reads a value back to the host; the CPU gathers the classes present in the batch either way.
    `reduce` (a sum over processes, needs `num_classes`) makes the class centres those of the global batch of all
    processes: every rank returns the global terms and the gradient of the global terms with respect to its own
    features (call it on every rank each step, also with no features). The public code computes the centres over
    its whole (single-process) batch.

    Args:
        features: (B, d) projected features f_i = h(x_i).
        targets: (B,) integer class ids (>= 0).
        margin: margin of L_inter.
        class_weights: optional 1-D pair weights w_c indexed by class id (e.g. `class_weights(counts, kind="lda")`);
            None = unweighted pairs.
        num_classes: C, the number of class ids; None = only the ids in the batch are known.
        reduce: optional sum over processes (needs `num_classes`), as above.

    Returns:
        (L_intra, L_inter), two scalars.
    """
    fn = "lda_divergence"
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.is_floating_point():
        raise ValueError(
            f"{fn}: `features` must be a floating tensor of shape (B, d); got {getattr(features, 'shape', features)}."
        )
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.shape != features.shape[:1]:
        raise ValueError(
            f"{fn}: `targets` must be an integer tensor of shape ({features.shape[0]},), one class id per feature row; "
            f"got {getattr(targets, 'dtype', type(targets))} {tuple(getattr(targets, 'shape', ()))}."
        )
    if reduce is not None and num_classes is None:
        raise ValueError(f"{fn}: `reduce` needs `num_classes` (the class slots summed over processes).")
    if features.shape[0] == 0 and reduce is None:
        zero = features.sum()
        return zero, zero
    on_cpu = on_host(targets)
    # Range checks read values back: the CPU checks; on an accelerator index_add_ asserts on a bad id itself.
    if on_cpu and bool((targets < 0).any()):
        raise ValueError(f"{fn}: `targets` must be >= 0 class ids.")
    if on_cpu and num_classes is not None and targets.numel() and int(targets.max()) >= num_classes:
        raise ValueError(f"{fn}: `targets` must be < num_classes = {num_classes}; got {int(targets.max())}.")
    dense = num_classes is not None and (not on_cpu or reduce is not None)
    if dense:
        # Every class id is a slot; absent classes (0 samples) are masked out of both terms.
        class_sizes = class_histogram(targets, num_classes)
        if reduce is not None:
            class_sizes = reduce(class_sizes)
        inverse, present = targets, class_sizes > 0
    else:
        # Classes present in the batch and each sample's slot among them; class ids are small, so no sort is needed.
        samples_per_id = torch.bincount(targets)
        present_ids = samples_per_id > 0
        classes = present_ids.nonzero().squeeze(1)
        inverse = (present_ids.cumsum(0) - 1)[targets]
        class_sizes, present = samples_per_id[classes], None
    pair_weights = None
    if class_weights is not None:
        weights = as_tensor_like(class_weights, features)
        largest = num_classes if dense else int(classes[-1]) + 1
        if weights.dim() != 1 or largest > weights.numel():
            raise ValueError(
                f"{fn}: `class_weights` must be 1-D with one weight per class id (ids up to {largest - 1}); "
                f"got shape {tuple(weights.shape)}. Fix: pass class_weights(counts, kind='lda') for all C classes."
            )
        pair_weights = (weights[:num_classes] * present if dense else weights[classes]).to(features.dtype)
    return _LdaDivergenceFunction.apply(features, inverse, class_sizes, pair_weights, float(margin), present, reduce)


class _LdaDivergenceFunction(torch.autograd.Function):
    """`lda_divergence` on validated inputs with a hand-written gradient.

    With u_i = f_i / |f_i|, class sums s_c = sum_i f_i (mu_c only enters through its direction, so the sum stands in
    for the mean), centres m_c = s_c / |s_c| and direction sums d_c = sum_i u_i over the N_c samples of class c:
      L_intra = sum_{c: N_c >= 2} (1 - <m_c, d_c> / N_c) / #{c: N_c >= 2}
      L_inter = sum_{c != c'} omega_cc' relu(<m_c, m_c'> + margin - 1) / Z,  omega_cc' = 1 or w_c + w_c'
      dL/dm_c = -k_c d_c + sum_c' 2 D_cc' m_c',   D_cc' = g_inter omega_cc' [hinge_cc' > 0] / Z  (D_cc = 0)
      dL/df_i = P(m_c) dL/dm_c / |s_c| - k_c P(u_i) m_c / |f_i|,   k_c = g_intra [N_c >= 2] / (N_c #{...}),
    P(v) = I - v v^T, c = y_i. `present` (a mask over the slots, or None when every slot is a present class) keeps
    empty slots out: their sums and centres are 0, and their pairs are masked. Autograd through F.normalize,
    index_put and the Gram product made ~20 passes over the (B, d) features and three (S, S, d) products; this is two
    segment sums and one gather of (B, d) plus two products, which keeps the loss within the time of the detection
    head's cross-entropy (benchmarks/loss_throughput.py). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, features, inverse, class_sizes, pair_weights, margin, present, reduce):
        num_slots, dim = class_sizes.numel(), features.shape[1]
        tiny = 1e-12  # F.normalize's eps: a zero vector stays zero
        norms = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min_(tiny)
        units = features / norms
        # index_add_, not index_put_(accumulate=True): the faster segment sum on CPU (timing in
        # benchmarks/results/loss_throughput.md).
        class_sums = features.new_zeros(num_slots, dim).index_add_(0, inverse, features)
        direction_sums = features.new_zeros(num_slots, dim).index_add_(0, inverse, units)
        if reduce is not None:  # the global batch's sums: one collective for both
            class_sums, direction_sums = reduce(torch.cat([class_sums, direction_sums], dim=1)).split(dim, dim=1)
        centre_norms = torch.linalg.vector_norm(class_sums, dim=1, keepdim=True).clamp_min_(tiny)
        centres = class_sums / centre_norms

        sizes = class_sizes.to(features.dtype).clamp_min(1.0)  # empty slots: 0 / 1, masked below
        has_spread = class_sizes >= 2
        num_spread = has_spread.sum().clamp_min(1).to(features.dtype)
        alignment = (centres * direction_sums).sum(dim=1) / sizes  # mean_i cos(mu_c, f_i)
        intra = torch.where(has_spread, 1.0 - alignment, 0.0).sum() / num_spread

        hinge = torch.relu_((centres @ centres.T).add_(margin - 1.0))
        hinge.diagonal().zero_()
        if present is None:
            num_present = features.new_tensor(float(num_slots))
        else:
            hinge.mul_(present[:, None] & present[None, :])
            num_present = present.sum().to(features.dtype)
        if pair_weights is None:
            total = hinge.sum()
            normaliser = (num_present * (num_present - 1.0)).clamp_min(1.0)
        else:
            # sum_{c != c'} (w_c + w_c') h_cc' from row and column sums; normaliser sum_{c != c'} (w_c + w_c').
            total = pair_weights @ hinge.sum(dim=1) + pair_weights @ hinge.sum(dim=0)
            normaliser = (2.0 * (num_present - 1.0) * pair_weights.sum()).clamp_min(torch.finfo(features.dtype).tiny)
        inter = total / normaliser  # a single class has no pair: total is 0
        ctx.save_for_backward(
            inverse,
            units,
            norms,
            centres,
            centre_norms,
            direction_sums,
            hinge,
            sizes,
            has_spread,
            num_spread,
            pair_weights,
            normaliser,
        )
        ctx.mark_non_differentiable(inverse, class_sizes)
        return intra, inter

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_intra, grad_inter):
        (
            inverse,
            units,
            norms,
            centres,
            centre_norms,
            direction_sums,
            hinge,
            sizes,
            has_spread,
            num_spread,
            pair_weights,
            normaliser,
        ) = ctx.saved_tensors
        intra_scale = torch.where(has_spread, grad_intra / (sizes * num_spread), 0.0)[:, None]  # k_c
        pair_grad = torch.sign(hinge)  # [hinge > 0] as a float in one pass (hinge >= 0)
        if pair_weights is not None:
            pair_grad.mul_(pair_weights[:, None] + pair_weights[None, :])
        # D + D^T = 2 D: omega and the hinge mask are symmetric (up to Gram rounding right at the kink, where the
        # hinge is ~1e-7 and its gradient undefined anyway).
        pair_grad.mul_(2.0 * grad_inter / normaliser)
        grad_centres = torch.addmm(direction_sums * -intra_scale, pair_grad, centres)
        radial = (centres * grad_centres).sum(dim=1, keepdim=True)
        grad_sums = grad_centres.sub_(centres * radial).div_(centre_norms)
        # One gather of [dL/ds_c, k_c m_c] per sample, then dL/df_i = dL/ds_c - k_c (m_c - u_i <u_i, m_c>) / |f_i|.
        per_sample = torch.cat([grad_sums, centres * intra_scale], dim=1).index_select(0, inverse)
        grad_sum_rows, scaled_centres = per_sample.split(centres.shape[1], dim=1)
        along_unit = (units * scaled_centres).sum(dim=1, keepdim=True)
        grad_features = scaled_centres.sub_(units * along_unit).div_(norms)
        return torch.sub(grad_sum_rows, grad_features), None, None, None, None, None, None


def accuracy_percent(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 training accuracy in percent, the input of `RiskBalancer.update` (Peng et al. 2021 eq. 6).

    Args:
        logits: (B, C) logits, B > 0.
        targets: (B,) integer class indices.

    Returns:
        The percentage of rows whose argmax is the target, in [0, 100].
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or logits.shape[0] == 0:
        raise ValueError(
            f"accuracy_percent: need logits (B, C) and targets (B,) with B > 0; got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}. Fix: skip the RiskBalancer update on batches without samples."
        )
    with torch.no_grad():
        return 100.0 * float((logits.argmax(dim=1) == targets).to(torch.float64).mean())


def default_window(num_samples: float, min_count: float, batch_size: int) -> int:
    """Risk-balancer window K = max(1, N / (n_min * B)) mini-batches, rounded up (docs/methods.md#lda).

    Args:
        num_samples: N, the number of training samples (> 0).
        min_count: n_min, the smallest non-zero class count (> 0).
        batch_size: B, the samples per mini-batch (> 0).

    Returns:
        K, an int >= 1.
    """
    if num_samples <= 0 or min_count <= 0 or batch_size <= 0:
        raise ValueError(
            f"default_window: N, n_min and B must be > 0; got N={num_samples}, n_min={min_count}, B={batch_size}."
        )
    return max(1, math.ceil(num_samples / (min_count * batch_size)))


class RiskBalancer:
    """Adaptive risk balance `a_t = max(0, A_u - A_b)^gamma` (Peng et al. 2021 eq. 6).

    A_u, A_b: the unbalanced and balanced classifiers' training top-1 accuracies (percent), each averaged over
    the last `window` mini-batches. `alpha` is a plain float (a constant for autograd); it is 0 before the first
    update. `window=None` derives K from `counts` and `batch_size` with `default_window`.

    `alpha_ramp` "zero_filled" (the authors' public code) averages over all `window` slots with the ones not yet
    filled counted as 0 (a_t ramps up over the first K batches); "recorded" averages only the batches seen.
    `fixed_alpha` >= 0 makes a_t that constant (accuracies are still recorded, for logging).

    Multi-process training: give `reduce` (a sum over processes, e.g. `lt_detectron.utils.distributed.
    all_reduce_sum`) and feed `update_counts` with each rank's correct-prediction counts; every rank then
    records the accuracies of the whole global mini-batch, so all ranks hold the same window and alpha and the
    checkpoint one rank writes is every rank's state.

    Args:
        gamma: exponent of a_t (>= 0).
        window: K, the number of mini-batches averaged (>= 1); None = derived from `counts` and `batch_size`.
        counts: length-C training counts n_c; used only with window=None.
        batch_size: B of the derived window (samples per mini-batch); used only with window=None.
        reduce: optional sum over processes, applied in `update_counts`.
        alpha_ramp: "zero_filled" or "recorded", as above.
        fixed_alpha: >= 0: a_t is this constant; < 0: the adaptive a_t.
    """

    def __init__(
        self,
        gamma: float = LDA_DEFAULTS.gamma,
        window: int | None = LDA_DEFAULTS.window,
        *,
        counts: ArrayLike | None = None,
        batch_size: int | None = None,
        reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        alpha_ramp: str = LDA_DEFAULTS.alpha_ramp,
        fixed_alpha: float = LDA_DEFAULTS.fixed_alpha,
    ) -> None:
        if gamma < 0:
            raise ValueError(f"RiskBalancer: gamma must be >= 0; got {gamma}.")
        if alpha_ramp not in ALPHA_RAMPS:
            raise ValueError(f"RiskBalancer: alpha_ramp must be one of {ALPHA_RAMPS}; got {alpha_ramp!r}.")
        if window is None:
            if counts is None or batch_size is None:
                raise ValueError(
                    "RiskBalancer(window=None) derives K = max(1, N / (n_min * B)) and needs counts= and batch_size=. "
                    "Fix: pass them, or an explicit window=K."
                )
            n = check_counts(counts, "RiskBalancer")
            window = default_window(float(n.sum()), float(n[n > 0].min()), batch_size)
        if int(window) < 1:
            raise ValueError(f"RiskBalancer: window must be >= 1 mini-batch; got {window}.")
        self.gamma = float(gamma)
        self.window = int(window)
        self.reduce = reduce
        self.alpha_ramp = alpha_ramp
        # Negative: adaptive a_t (eq. 6).
        self.fixed_alpha = float(fixed_alpha)
        self._acc_unbalanced: deque[float] = deque(maxlen=self.window)
        self._acc_balanced: deque[float] = deque(maxlen=self.window)

    def update(self, acc_unbalanced: float, acc_balanced: float) -> float:
        """Record one mini-batch's accuracies (percent, 0..100) and return the new alpha.

        Args:
            acc_unbalanced: the unbalanced classifier's top-1 accuracy A_u in percent.
            acc_balanced: the balanced classifier's top-1 accuracy A_b in percent.

        Returns:
            a_t after this mini-batch (`alpha`).
        """
        for name, value in (("acc_unbalanced", acc_unbalanced), ("acc_balanced", acc_balanced)):
            if not 0.0 <= float(value) <= 100.0:
                raise ValueError(
                    f"RiskBalancer.update: {name} must be a percentage in [0, 100]; got {float(value)}. "
                    "Fix: use lt_detectron.losses.accuracy_percent(logits, targets)."
                )
        self._acc_unbalanced.append(float(acc_unbalanced))
        self._acc_balanced.append(float(acc_balanced))
        return self.alpha

    def update_counts(self, correct_unbalanced: Any, correct_balanced: Any, total: Any) -> float:
        """Record one mini-batch from its counts of correct predictions out of `total` samples; return alpha.

        With `reduce`, the three counts are first summed over processes (a collective: call this on every rank
        each step, with zeros on a rank without samples). A mini-batch without samples anywhere is not recorded.
        Counts may be numbers or 0-dim tensors (on the device the reduction needs).

        Args:
            correct_unbalanced: the unbalanced classifier's number of correct top-1 predictions.
            correct_balanced: the balanced classifier's number of correct top-1 predictions.
            total: the number of samples in the mini-batch.

        Returns:
            a_t after this mini-batch (`alpha`).
        """
        values = (correct_unbalanced, correct_balanced, total)
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
        counts = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
        if self.reduce is not None:
            counts = self.reduce(counts)
        correct_u, correct_b, num = counts.tolist()
        if not 0 <= correct_u <= num or not 0 <= correct_b <= num:
            raise ValueError(
                f"RiskBalancer.update_counts: correct counts must lie in [0, total]; got {correct_u}, {correct_b} "
                f"of {num}."
            )
        if num <= 0:
            return self.alpha
        return self.update(100.0 * correct_u / num, 100.0 * correct_b / num)

    @property
    def alpha(self) -> float:
        """The current a_t: `fixed_alpha` when >= 0, else max(0, A_u - A_b)^gamma; 0 before the first update."""
        if self.fixed_alpha >= 0:
            return self.fixed_alpha
        if not self._acc_unbalanced:
            return 0.0
        slots = self.window if self.alpha_ramp == "zero_filled" else len(self._acc_unbalanced)
        gap = math.fsum(self._acc_unbalanced) / slots - math.fsum(self._acc_balanced) / slots
        return max(0.0, gap) ** self.gamma

    def state_dict(self) -> Dict[str, Any]:
        """Plain Python values, so the state can live inside a torch checkpoint."""
        return {
            "gamma": self.gamma,
            "window": self.window,
            "acc_unbalanced": list(self._acc_unbalanced),
            "acc_balanced": list(self._acc_balanced),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore gamma, the window and the accuracy histories.

        Args:
            state: a dict from `state_dict`.
        """
        missing = {"gamma", "window", "acc_unbalanced", "acc_balanced"} - set(state)
        if missing:
            raise ValueError(f"RiskBalancer.load_state_dict: state is missing {sorted(missing)}.")
        if len(state["acc_unbalanced"]) != len(state["acc_balanced"]):
            raise ValueError("RiskBalancer.load_state_dict: the two accuracy histories differ in length.")
        self.gamma = float(state["gamma"])
        self.window = int(state["window"])
        self._acc_unbalanced = deque((float(a) for a in state["acc_unbalanced"]), maxlen=self.window)
        self._acc_balanced = deque((float(a) for a in state["acc_balanced"]), maxlen=self.window)

    def __repr__(self) -> str:
        return (
            f"RiskBalancer(gamma={self.gamma}, window={self.window}, alpha_ramp={self.alpha_ramp!r}, "
            f"alpha={self.alpha:.4g})"
        )


class LDATerms(NamedTuple):
    """The four unweighted LDA loss terms (Eq. 9 of the LDA paper)."""

    unbalanced: torch.Tensor  # L_u = sum_i CE(g_u(x_i), y_i) / normaliser (the batch size unless given)
    balanced: torch.Tensor  # L_b = sum_i w_{y_i} CE(g_b(x_i), y_i), w_c = 1 / (C n_c): a sum, not a mean
    intra: torch.Tensor  # L_intra of lda_divergence
    inter: torch.Tensor  # L_inter of lda_divergence


def lda_loss_terms(
    logits_unbalanced: torch.Tensor,
    logits_balanced: torch.Tensor,
    projected: torch.Tensor,
    targets: torch.Tensor,
    balanced_weight: ArrayLike,
    margin: float = LDA_DEFAULTS.margin,
    pair_weights: bool = LDA_DEFAULTS.pair_weights,
    normaliser: float | torch.Tensor | None = None,
    reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> LDATerms:
    """`LDATerms` of one batch: the two classifiers' logits, the projected features h(x) and the class ids.

    `balanced_weight` is `class_weights(counts, kind="lda")`; with `pair_weights` it also weights the inter-class
    pairs (paper eq. 8). `normaliser` divides the summed L_u (default: the number of samples, a mean); detection
    passes the number of sampled RoIs, foreground and background, as Detectron2 normalises its classification loss.
    `reduce` computes the divergence over the global batch of all processes (`lda_divergence`).

    Args:
        logits_unbalanced: (B, C) logits of the unbalanced classifier g_u.
        logits_balanced: (B, C) logits of the balanced classifier g_b.
        projected: (B, d) projected features h(x).
        targets: (B,) integer class indices in [0, C).
        balanced_weight: length-C weights w_c of L_b.
        margin: margin of L_inter.
        pair_weights: weight the inter-class pairs by w_c + w_c'.
        normaliser: divisor of the summed L_u; None = B.
        reduce: optional sum over processes for the divergence.

    Returns:
        The four unweighted scalar terms.
    """
    if normaliser is None:
        loss_u = F.cross_entropy(logits_unbalanced, targets)
    else:
        loss_u = F.cross_entropy(logits_unbalanced, targets, reduction="sum") / normaliser
    # L_b sums w_y CE over the batch without normalising (the authors' public code).
    loss_b = cb_cross_entropy(logits_balanced, targets, balanced_weight, reduction="sum")
    intra, inter = lda_divergence(
        projected,
        targets,
        margin=margin,
        class_weights=balanced_weight if pair_weights else None,
        num_classes=logits_unbalanced.shape[1],
        reduce=reduce,
    )
    return LDATerms(loss_u, loss_b, intra, inter)


def weighted_lda_terms(
    terms: LDATerms,
    alpha: float,
    lambda_u: float = LDA_DEFAULTS.lambda_u,
    lambda_b: float = LDA_DEFAULTS.lambda_b,
    lambda_d: float = LDA_DEFAULTS.lambda_d,
) -> Dict[str, torch.Tensor]:
    """The weighted terms `lambda_u L_u`, `lambda_b a_t L_b`, `lambda_d L_intra`, `lambda_d L_inter` (sum: Eq. 9).

    Args:
        terms: the unweighted terms (`lda_loss_terms`).
        alpha: a_t (`RiskBalancer.alpha`).
        lambda_u: weight of L_u.
        lambda_b: weight of a_t L_b.
        lambda_d: weight of L_intra and of L_inter.

    Returns:
        {"unbalanced", "balanced", "intra", "inter"}: the weighted scalar terms.
    """
    return {
        "unbalanced": lambda_u * terms.unbalanced,
        "balanced": lambda_b * alpha * terms.balanced,
        "intra": lambda_d * terms.intra,
        "inter": lambda_d * terms.inter,
    }


def lda_loss(
    logits_unbalanced: torch.Tensor,
    logits_balanced: torch.Tensor,
    projected: torch.Tensor,
    targets: torch.Tensor,
    balanced_weight: ArrayLike,
    alpha: float,
    lambda_u: float = LDA_DEFAULTS.lambda_u,
    lambda_b: float = LDA_DEFAULTS.lambda_b,
    lambda_d: float = LDA_DEFAULTS.lambda_d,
    margin: float = LDA_DEFAULTS.margin,
    pair_weights: bool = LDA_DEFAULTS.pair_weights,
) -> torch.Tensor:
    """`L = lambda_u L_u + lambda_b a_t L_b + lambda_d (L_intra + L_inter)` (LDA paper Eq. 9), a batch-level scalar.

    `alpha` is a_t, a constant for autograd (`RiskBalancer.alpha`); `LDALoss` keeps the balancer and the weights.

    Args:
        logits_unbalanced: (B, C) logits of the unbalanced classifier g_u.
        logits_balanced: (B, C) logits of the balanced classifier g_b.
        projected: (B, d) projected features h(x).
        targets: (B,) integer class indices in [0, C).
        balanced_weight: length-C weights w_c of L_b, `class_weights(counts, kind="lda")`.
        alpha: a_t.
        lambda_u: weight of L_u.
        lambda_b: weight of a_t L_b.
        lambda_d: weight of L_intra + L_inter.
        margin: margin of L_inter.
        pair_weights: weight the inter-class pairs by w_c + w_c'.

    Returns:
        The scalar loss L.
    """
    terms = lda_loss_terms(
        logits_unbalanced, logits_balanced, projected, targets, balanced_weight, margin, pair_weights
    )
    return _combine(terms, alpha, lambda_u, lambda_b, lambda_d)


def _combine(terms: LDATerms, alpha: float, lambda_u: float, lambda_b: float, lambda_d: float) -> torch.Tensor:
    return lambda_u * terms.unbalanced + lambda_b * alpha * terms.balanced + lambda_d * (terms.intra + terms.inter)


class LDAOutput(NamedTuple):
    """What `LDALoss.forward` computed: the total, its unweighted terms, a_t and the two training accuracies.

    Attributes:
        loss: the scalar total L.
        terms: the unweighted terms.
        alpha: the a_t used in `loss`.
        acc_unbalanced: the unbalanced classifier's top-1 accuracy in percent (this process's samples).
        acc_balanced: the balanced classifier's top-1 accuracy in percent (this process's samples).
    """

    loss: torch.Tensor
    terms: LDATerms
    alpha: float
    acc_unbalanced: float
    acc_balanced: float


class LDALoss(nn.Module):
    """`lda_loss` with its state: the class weights w_c = 1 / (C n_c) and the `RiskBalancer` that gives a_t.

    `window=None` derives K = max(1, N / (n_min * B)) from `counts` and `batch_size` (`default_window`).
    `forward` records the two classifiers' accuracies in the balancer (unless `update_balancer=False`, e.g. in
    evaluation), then uses the new a_t. With `reduce` (see `RiskBalancer`) the balancer records the accuracies of
    the global batch of all processes; every rank must then update it each step (`update_balancer_empty` on a
    rank without samples). `gather_centres` (with `reduce`) computes the divergence's class centres over the global
    batch too.
    The balancer state is plain Python (`self.balancer.state_dict()`); the owner saves it with its checkpoint.

    Args:
        counts: length-C training counts n_c, for w_c and the derived window.
        gamma: exponent of a_t (`RiskBalancer`).
        window: risk-balancer window K in mini-batches; None = derived from `counts` and `batch_size`.
        batch_size: B of the derived window.
        lambda_u: weight of L_u.
        lambda_b: weight of a_t L_b.
        lambda_d: weight of L_intra + L_inter.
        margin: margin of L_inter.
        pair_weights: weight the inter-class pairs by w_c + w_c'.
        zero_policy: `class_weights`' policy for classes with n_c = 0 ("error", "exclude" or "warn").
        reduce: optional sum over processes, as above.
        gather_centres: compute the class centres over the global batch (needs `reduce`).
        alpha_ramp: "zero_filled" or "recorded" (`RiskBalancer`).
        fixed_alpha: >= 0: a_t is this constant; < 0: the adaptive a_t.
    """

    def __init__(
        self,
        counts: ArrayLike,
        *,
        gamma: float = LDA_DEFAULTS.gamma,
        window: int | None = LDA_DEFAULTS.window,
        batch_size: int | None = None,
        lambda_u: float = LDA_DEFAULTS.lambda_u,
        lambda_b: float = LDA_DEFAULTS.lambda_b,
        lambda_d: float = LDA_DEFAULTS.lambda_d,
        margin: float = LDA_DEFAULTS.margin,
        pair_weights: bool = LDA_DEFAULTS.pair_weights,
        zero_policy: str = "error",
        reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        gather_centres: bool = False,
        alpha_ramp: str = LDA_DEFAULTS.alpha_ramp,
        fixed_alpha: float = LDA_DEFAULTS.fixed_alpha,
    ) -> None:
        super().__init__()
        weight = class_weights(counts, kind="lda", zero_policy=zero_policy, dtype=torch.float32)
        self.register_buffer("balanced_weight", weight, persistent=False)
        self.balancer = RiskBalancer(
            gamma=gamma,
            window=window,
            counts=counts,
            batch_size=batch_size,
            reduce=reduce,
            alpha_ramp=alpha_ramp,
            fixed_alpha=fixed_alpha,
        )
        if gather_centres and reduce is None:
            raise ValueError("LDALoss(gather_centres=True) sums the class centres over processes and needs reduce=.")
        # The divergence's class centres over the global batch (reduce) or this process's batch.
        self.divergence_reduce = reduce if gather_centres else None
        self.lambda_u, self.lambda_b, self.lambda_d = float(lambda_u), float(lambda_b), float(lambda_d)
        self.margin = float(margin)
        self.pair_weights = bool(pair_weights)

    @classmethod
    def from_defaults(cls, counts: ArrayLike, lda: LDADefaults, **kwargs: Any) -> "LDALoss":
        """An `LDALoss` with the loss fields of a defaults record (`window` <= 0: derived from counts and
        `batch_size`); `kwargs` are the other constructor arguments (batch_size, zero_policy, reduce, ...).

        Args:
            counts: length-C training counts n_c.
            lda: the hyper-parameters (proj_head, proj_dim, balanced_feature_grad and unbalanced_norm are not used).
            kwargs: further `LDALoss` keyword arguments.

        Returns:
            The new `LDALoss`.
        """
        return cls(
            counts,
            gamma=lda.gamma,
            window=lda.window if lda.window and lda.window > 0 else None,
            lambda_u=lda.lambda_u,
            lambda_b=lda.lambda_b,
            lambda_d=lda.lambda_d,
            margin=lda.margin,
            pair_weights=lda.pair_weights,
            alpha_ramp=lda.alpha_ramp,
            fixed_alpha=lda.fixed_alpha,
            **kwargs,
        )

    def terms(self, logits_unbalanced, logits_balanced, projected, targets, normaliser=None) -> LDATerms:
        """`lda_loss_terms` with this loss's weights, margin and divergence reduction.

        Args:
            logits_unbalanced: (B, C) logits of the unbalanced classifier.
            logits_balanced: (B, C) logits of the balanced classifier.
            projected: (B, d) projected features.
            targets: (B,) integer class indices.
            normaliser: divisor of the summed L_u; None = B.

        Returns:
            The four unweighted scalar terms.
        """
        return lda_loss_terms(
            logits_unbalanced,
            logits_balanced,
            projected,
            targets,
            self.balanced_weight,
            self.margin,
            self.pair_weights,
            normaliser=normaliser,
            reduce=self.divergence_reduce,
        )

    def divergence(self, projected: torch.Tensor, targets: torch.Tensor, num_classes: int):
        """`(L_intra, L_inter)` with this loss's margin, pair weights and process reduction (`lda_divergence`); a rank
        without samples calls it with empty tensors to join the other ranks' centres.

        Args:
            projected: (B, d) projected features, B >= 0.
            targets: (B,) integer class indices.
            num_classes: C.

        Returns:
            (L_intra, L_inter), two scalars.
        """
        return lda_divergence(
            projected,
            targets,
            margin=self.margin,
            class_weights=self.balanced_weight if self.pair_weights else None,
            num_classes=num_classes,
            reduce=self.divergence_reduce,
        )

    def update_balancer(self, logits_unbalanced, logits_balanced, targets) -> tuple[float, float, float]:
        """Record this batch's accuracies; returns (a_t, acc_unbalanced, acc_balanced) (this process's accuracies).

        Args:
            logits_unbalanced: (B, C) logits of the unbalanced classifier, B > 0.
            logits_balanced: (B, C) logits of the balanced classifier.
            targets: (B,) integer class indices.

        Returns:
            The new a_t and the two top-1 accuracies in percent.
        """
        if self.balancer.reduce is None:
            acc_u = accuracy_percent(logits_unbalanced, targets)
            acc_b = accuracy_percent(logits_balanced, targets)
            return self.balancer.update(acc_u, acc_b), acc_u, acc_b
        with torch.no_grad():
            correct_u = (logits_unbalanced.argmax(dim=1) == targets).sum()
            correct_b = (logits_balanced.argmax(dim=1) == targets).sum()
        alpha = self.balancer.update_counts(correct_u, correct_b, targets.numel())
        return alpha, 100.0 * float(correct_u) / targets.numel(), 100.0 * float(correct_b) / targets.numel()

    def update_balancer_empty(self) -> float:
        """This process had no sample this step: with `reduce`, join the other ranks' update; returns a_t."""
        return self.balancer.update_counts(0, 0, 0) if self.balancer.reduce is not None else self.balancer.alpha

    def weighted(self, terms: LDATerms, alpha: float) -> Dict[str, torch.Tensor]:
        """`weighted_lda_terms` with this loss's lambdas.

        Args:
            terms: the unweighted terms.
            alpha: a_t.

        Returns:
            {"unbalanced", "balanced", "intra", "inter"}: the weighted scalar terms.
        """
        return weighted_lda_terms(terms, alpha, self.lambda_u, self.lambda_b, self.lambda_d)

    def forward(
        self, logits_unbalanced, logits_balanced, projected, targets, update_balancer: bool = True, normaliser=None
    ) -> LDAOutput:
        """The loss of one batch, with a_t after recording this batch's accuracies (unless `update_balancer` is False).

        Args:
            logits_unbalanced: (B, C) logits of the unbalanced classifier, B > 0.
            logits_balanced: (B, C) logits of the balanced classifier.
            projected: (B, d) projected features.
            targets: (B,) integer class indices.
            update_balancer: record the accuracies in the balancer (False: use the current a_t, e.g. in evaluation).
            normaliser: divisor of the summed L_u; None = B.

        Returns:
            The total, its unweighted terms, a_t and the two accuracies.
        """
        terms = self.terms(logits_unbalanced, logits_balanced, projected, targets, normaliser)
        if update_balancer:
            alpha, acc_u, acc_b = self.update_balancer(logits_unbalanced, logits_balanced, targets)
        else:
            alpha = self.balancer.alpha
            acc_u = accuracy_percent(logits_unbalanced, targets)
            acc_b = accuracy_percent(logits_balanced, targets)
        loss = _combine(terms, alpha, self.lambda_u, self.lambda_b, self.lambda_d)
        return LDAOutput(loss, terms, alpha, acc_u, acc_b)
