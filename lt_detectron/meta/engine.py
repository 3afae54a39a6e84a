"""One step of Algorithm 1 (lines 8-15) of Jamal et al., CVPR 2020, arXiv:2003.10780, with torch.func:
meta-learned conditional weights eps.

Per-example weight `w_{y_i} + eps_i`. With eps = 0, a virtual SGD step
`theta' = theta - eta * grad_theta mean_i (w_{y_i} + eps_i) L_i(theta)` is kept differentiable in eps,
the unweighted dev loss `L_d(theta')` is differentiated w.r.t. eps, `eps <- -tau * dL_d/deps`, and the caller
takes the real step on `mean_i (w_{y_i} + eps_i) L_i`. At eps = 0 this gives the closed form
`dL_d/deps_i = -(eta / |B|) <grad L_d(theta'), grad L_i(theta)>`, so examples whose gradient agrees with the
dev gradient get larger weights.

Which parameters are meta-differentiated is the caller's choice of `module`: the whole model, or only the
classification layers fed with detached features (the cheap mode of Jamal et al. 2020 §5.3). Framework-agnostic:
no Detectron2 import here.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from .tracker import EpsTracker

__all__ = [
    "MetaReweighter",
    "MetaStepResult",
    "PerExampleLoss",
    "batchnorm_stats_frozen",
    "stage_two_start",
    "MetaDefaults",
    "META_DEFAULTS",
]


@dataclass(frozen=True)
class MetaDefaults:
    """Paper defaults of the meta-learned conditional weights (Jamal et al., "Rethinking Class-Balanced Methods for
    Long-Tailed Visual Recognition from a Domain Adaptation Perspective", CVPR 2020, arXiv:2003.10780).

    inner_lr <= 0: the virtual step uses the optimizer's current lr; start < 0: the meta stage starts at the first
    lr decay (`stage_two_start`); beta None: the effective number's (N - 1) / N; mode "full" meta-differentiates the
    whole model ("classifier": the classification layers only, their Places-LT variant); 10 dev images per class
    (CIFAR-LT); eps unclipped and unnormalised (l2rw False).

    Attributes:
        inner_lr: eta, the learning rate of the virtual step; <= 0 = the optimizer's current lr.
        eps_lr: tau, the step size of the eps update.
        beta: effective-number beta of the class weights w_y; None = (N - 1) / N.
        start: t1, the start of the meta stage (caller's unit); < 0 = the first lr decay.
        mode: "full" or "classifier", the parameters meta-differentiated.
        l2rw: the L2RW ablation (clip eps at 0, normalise the weights per batch).
        dev_per_class: k, the most dev examples held out per class.
        dev_batch_size: examples per dev batch.
        log_period: meta steps averaged into one point of the eps history.
    """

    inner_lr: float = -1.0
    eps_lr: float = 1.0
    beta: Optional[float] = None
    start: int = -1
    mode: str = "full"
    l2rw: bool = False
    dev_per_class: int = 10
    dev_batch_size: int = 100
    log_period: int = 20


META_DEFAULTS = MetaDefaults()

# (module output, targets) -> Tensor[B] of unreduced per-example losses.
PerExampleLoss = Callable[[Any, Tensor], Tensor]
Inputs = Union[Tensor, Tuple[Any, ...]]


@dataclass
class MetaStepResult:
    """Everything one meta step produced; all tensors are detached except `loss`."""

    weights: Tensor  # [B] w_{y_i} + eps_i, the per-example weights of the real step
    eps: Tensor  # [B] weights - w_{y_i} (0 for examples outside meta_mask)
    raw_eps: Tensor  # [B] -tau * dL_d/deps before the L2RW clip/normalisation (equal to eps by default)
    eps_grad: Tensor  # [B] dL_d/deps at eps = 0
    dev_loss: Tensor  # scalar L_d(theta'), the unweighted dev loss after the virtual step
    loss: Optional[Tensor] = None  # the real weighted loss (graph to the module), when asked for


@contextlib.contextmanager
def batchnorm_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Virtual forwards use batch statistics but must not update running stats (a side effect on the real
    model, and an in-place write on a captured tensor that torch.func transforms reject).

    A context manager: inside it, the batch-norm layers of `module` that track running statistics stop tracking
    them; on exit they track them again.

    Args:
        module: the model whose batch-norm layers are frozen.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def stage_two_start(start: int, lr_steps: Iterable[int]) -> int:
    """When the meta stage starts: `start` when >= 0, else at the first lr decay, `min(lr_steps)` (0 without decay).

    The first decay is the smallest milestone, whatever order the config lists them in: Detectron2 and the
    classification trainer both decay at every milestone reached, so `lr_steps[0]` would be wrong for an unsorted
    list, and for a sorted one the two agree. Units are the caller's (detection: iterations; classification: epochs).

    Args:
        start: the configured start; < 0 = the first lr decay.
        lr_steps: the lr decay milestones, in any order.

    Returns:
        t1, the first step of the meta stage.
    """
    start = int(start)
    return start if start >= 0 else int(min((int(s) for s in lr_steps), default=0))


def _as_args(inputs: Inputs) -> Tuple[Any, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


class MetaReweighter:
    """Meta-learned per-example weights `w_y + eps` (Jamal et al. 2020, Algorithm 1).

    See docs/methods.md#meta-learned-conditional-weights.

    Args:
        class_weights: Tensor[K] of class weights w_c over every target index the loss sees (for detection
            K = C + 1 with the background weight, usually 1).
        inner_lr: eta, the learning rate of the virtual step.
        eps_lr: tau, the step size of the eps update.
        start_iter: t1; `is_meta_step(it)` is False for it < t1 (stage 1, plain training).
        l2rw: the L2RW ablation: clip eps at 0 and normalise the weights of the meta examples to mean 1 per
            batch. Default False: eps is unclipped and unnormalised (Jamal et al. 2020 §4.3).
            L2RW: Ren et al., ICML 2018, arXiv:1803.09050.
        track_period: number of meta steps averaged into one point of the eps history.
    """

    def __init__(
        self,
        class_weights: Tensor,
        *,
        inner_lr: float = 0.01,
        eps_lr: float = META_DEFAULTS.eps_lr,
        start_iter: int = 0,
        l2rw: bool = META_DEFAULTS.l2rw,
        track_period: int = META_DEFAULTS.log_period,
    ):
        class_weights = torch.as_tensor(class_weights).detach()
        if class_weights.ndim != 1 or class_weights.numel() == 0:
            raise ValueError(
                f"MetaReweighter: class_weights must be a non-empty 1-D tensor, got {tuple(class_weights.shape)}"
            )
        if not torch.isfinite(class_weights).all() or (class_weights < 0).any():
            raise ValueError(
                "MetaReweighter: class_weights must be finite and >= 0 (see losses.class_weights zero_policy)"
            )
        if inner_lr <= 0 or eps_lr <= 0:
            raise ValueError(f"MetaReweighter: inner_lr ({inner_lr}) and eps_lr ({eps_lr}) must be > 0")
        self.class_weights = class_weights.clone()
        self.inner_lr = float(inner_lr)
        self.eps_lr = float(eps_lr)
        self.start_iter = int(start_iter)
        self.l2rw = bool(l2rw)
        self.tracker = EpsTracker(class_weights.numel(), period=track_period)
        self.meta_steps = 0

    @property
    def num_classes(self) -> int:
        """K, the number of class weights (target indices)."""
        return self.class_weights.numel()

    def is_meta_step(self, iteration: int) -> bool:
        """Stage 2 of Algorithm 1 runs from iteration t1 = start_iter on.

        Args:
            iteration: the current training iteration.

        Returns:
            Whether this iteration takes a meta step.
        """
        return iteration >= self.start_iter

    def step(
        self,
        module: nn.Module,
        loss_fn: PerExampleLoss,
        inputs: Inputs,
        targets: Tensor,
        dev_inputs: Inputs,
        dev_targets: Tensor,
        *,
        iteration: int,
        meta_mask: Optional[Tensor] = None,
        dev_loss_fn: Optional[PerExampleLoss] = None,
        compute_loss: bool = False,
    ) -> MetaStepResult:
        """Algorithm 1 lines 8-14: the weights `w_y + eps` for this batch (and the eps history update).

        `loss_fn(module(*inputs), targets)` must return the unreduced per-example losses, Tensor[B].
        `meta_mask` (bool Tensor[B]) names the examples that get a conditional weight (detection: the
        foreground RoIs); the others keep w_y. `dev_loss_fn` defaults to `loss_fn` (the dev loss is unweighted).
        With `compute_loss=True`, `result.loss` is the real weighted loss on `module(*inputs)` with its graph,
        for line 15; in the classifier-only mode the caller instead weights its own full-model per-example
        losses with `weighted_loss`.

        Args:
            module: the meta-differentiated model (its trainable parameters), called as `module(*inputs)`.
            loss_fn: (module output, targets) -> Tensor[B] of per-example losses.
            inputs: a training batch: a tensor, or a tuple of positional arguments of `module`.
            targets: Tensor[B] of target indices in [0, K).
            dev_inputs: a dev batch, like `inputs`.
            dev_targets: the dev batch's target indices in [0, K).
            iteration: the training iteration, recorded in the eps history.
            meta_mask: optional bool Tensor[B]; None = every example gets a conditional weight.
            dev_loss_fn: the per-example dev loss; None = `loss_fn`.
            compute_loss: also compute `result.loss`.

        Returns:
            The weights, eps, dev loss and (with `compute_loss`) the weighted loss of this batch.
        """
        targets = targets.long()
        dev_targets = dev_targets.long()
        self._check_targets(targets, "targets")
        self._check_targets(dev_targets, "dev_targets")
        dev_loss_fn = dev_loss_fn or loss_fn
        args, dev_args = _as_args(inputs), _as_args(dev_inputs)
        params = {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}
        if not params:
            raise ValueError("MetaReweighter.step: the module has no trainable parameters to meta-differentiate")
        dtype = next(iter(params.values())).dtype
        device = targets.device
        num = targets.numel()
        mask = torch.ones(num, dtype=torch.bool, device=device) if meta_mask is None else meta_mask.to(device).bool()
        if mask.shape != targets.shape:
            raise ValueError(
                f"MetaReweighter.step: meta_mask has shape {tuple(mask.shape)}, targets {tuple(targets.shape)}"
            )
        class_w = self.class_weights.to(device=device, dtype=dtype)[targets]
        mask_f = mask.to(dtype)

        def per_example(fn: PerExampleLoss, p: Dict[str, Tensor], a: Tuple[Any, ...], y: Tensor, what: str) -> Tensor:
            losses = fn(functional_call(module, p, a), y)
            if losses.shape != y.shape:
                raise ValueError(
                    f"MetaReweighter: the per-example {what} loss must have shape {tuple(y.shape)} (reduction='none'), "
                    f"got {tuple(losses.shape)}"
                )
            return losses

        def weighted_train_loss(p: Dict[str, Tensor], eps: Tensor) -> Tensor:
            return ((class_w + eps * mask_f) * per_example(loss_fn, p, args, targets, "training")).mean()

        def dev_loss_after_virtual_step(eps: Tensor) -> Tuple[Tensor, Tensor]:
            g = grad(weighted_train_loss)(params, eps)
            virtual = {name: p - self.inner_lr * g[name] for name, p in params.items()}
            dev_loss = per_example(dev_loss_fn, virtual, dev_args, dev_targets, "dev").mean()
            return dev_loss, dev_loss

        eps0 = torch.zeros(num, dtype=dtype, device=device)
        with batchnorm_stats_frozen(module):
            eps_grad, dev_loss = grad(dev_loss_after_virtual_step, has_aux=True)(eps0)
        raw_eps = -self.eps_lr * eps_grad * mask_f
        if self.l2rw:
            weights = self._l2rw_weights(class_w, raw_eps, mask)
            eps = (weights - class_w) * mask_f
        else:
            weights, eps = class_w + raw_eps, raw_eps
        self.tracker.update(eps[mask], targets[mask], iteration)
        self.meta_steps += 1
        result = MetaStepResult(
            weights=weights.detach(),
            eps=eps.detach(),
            raw_eps=raw_eps.detach(),
            eps_grad=eps_grad.detach(),
            dev_loss=dev_loss.detach(),
        )
        if compute_loss:
            result.loss = self.weighted_loss(loss_fn(module(*args), targets), result)
        return result

    @staticmethod
    def weighted_loss(per_example_losses: Tensor, result: MetaStepResult) -> Tensor:
        """Line 14: `mean_i (w_{y_i} + eps_i) L_i` (the batch mean of docs/methods.md#conventions).

        Args:
            per_example_losses: Tensor[B] of per-example losses of the batch given to `step`.
            result: what `step` returned for that batch.

        Returns:
            The scalar weighted loss (the weights are constants for autograd).
        """
        if per_example_losses.shape != result.weights.shape:
            raise ValueError(
                f"MetaReweighter.weighted_loss: per-example losses have shape {tuple(per_example_losses.shape)}, "
                f"the weights {tuple(result.weights.shape)}; pass the same batch given to step()"
            )
        return (result.weights.to(per_example_losses.dtype) * per_example_losses).mean()

    @staticmethod
    def _l2rw_weights(class_w: Tensor, raw_eps: Tensor, mask: Tensor) -> Tensor:
        """L2RW ablation: eps clipped at 0, the meta examples' weights rescaled to mean 1 in the batch."""
        total = class_w + raw_eps.clamp_min(0)
        denom = total[mask].sum()
        if denom <= 0:  # every weight is 0: nothing to normalise (L2RW keeps the zeros)
            scaled = torch.zeros_like(total)
        else:
            scaled = total * (mask.sum() / denom)
        return torch.where(mask, scaled, class_w)

    def _check_targets(self, targets: Tensor, what: str) -> None:
        if targets.numel() and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise ValueError(
                f"MetaReweighter: {what} must lie in [0, {self.num_classes}) (the length of class_weights); "
                f"got {int(targets.min())}..{int(targets.max())}"
            )

    def state_dict(self) -> Dict[str, Any]:
        """Everything eps depends on besides the model and the batches: schedule position, weights, history."""
        return {
            "meta_steps": self.meta_steps,
            "class_weights": self.class_weights.clone(),
            "hparams": {
                "inner_lr": self.inner_lr,
                "eps_lr": self.eps_lr,
                "start_iter": self.start_iter,
                "l2rw": self.l2rw,
            },
            "tracker": self.tracker.state_dict(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume: the checkpoint's class weights, meta-step count and eps history (warns when the class weights,
        start_iter or l2rw differ from this run's).

        Args:
            state: a dict from `state_dict`, for the same number of classes.
        """
        saved_w = torch.as_tensor(state["class_weights"])
        if saved_w.shape != self.class_weights.shape:
            raise ValueError(
                f"MetaReweighter.load_state_dict: the checkpoint has {saved_w.numel()} class weights, this run "
                f"{self.class_weights.numel()}; resume with the same training set"
            )
        if not torch.allclose(saved_w.double(), self.class_weights.double()):
            warnings.warn(
                "MetaReweighter: class weights differ from the checkpoint's; resuming with the checkpoint's",
                stacklevel=2,
            )
        # The schedule and the L2RW switch change what eps means; learning rates may legitimately follow a
        # schedule (a caller setting inner_lr to the optimizer's lr), so only the former warn.
        ours = {"start_iter": self.start_iter, "l2rw": self.l2rw}
        changed = {k: (v, ours[k]) for k, v in state.get("hparams", {}).items() if k in ours and ours[k] != v}
        if changed:
            warnings.warn(
                f"MetaReweighter: schedule/L2RW changed since the checkpoint (saved, now): {changed}", stacklevel=2
            )
        self.class_weights = saved_w.clone()
        self.meta_steps = int(state["meta_steps"])
        self.tracker.load_state_dict(state["tracker"])
