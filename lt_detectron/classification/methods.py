"""Long-tailed training methods for classification, each selectable by `METHOD.NAME` alone.

A method adapts a `LTClassifierNet` (it may replace `model.classifier` and own extra heads), computes the training
loss of a batch, and produces inference logits. Every loss, class weight and balancer comes from
`lt_detectron.losses` / `lt_detectron.meta`; this module only wires them to the network
(docs/methods.md describes each method and cites its paper).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from lt_detectron import losses as L
from lt_detectron.layers import CosineLinear, projection_head
from lt_detectron.registry import Registry, deprecated_dict

from .config import ConfigError
from .m2m import M2mConfig, load_frozen_classifier, m2m_batch

__all__ = [
    "METHOD_REGISTRY",
    "METHOD_CLASSES",
    "MethodInputs",
    "build_method",
    "prepare_method",
    "ClassificationMethod",
    "LossMethod",
    "LADEMethod",
    "LDAMethod",
    "MetaMethod",
    "M2mMethod",
    "StepContext",
    "parse_target_prior",
]


@dataclass
class StepContext:
    """Where training stands when a loss is computed (methods with schedules read it)."""

    epoch: int
    global_step: int
    lr: float


@dataclass
class MethodInputs:
    """What a method takes from the data before it is built (`ClassificationMethod.prepare`)."""

    train_indices: np.ndarray | None = None  # the part of the training split to train on; None: all of it
    extras: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the method's builder


def parse_target_prior(spec: str, train_counts: np.ndarray) -> Tensor:
    """METHOD.TEST_TARGET_PRIOR -> p_t (float32): `lt_detectron.losses.parse_target_prior` with a ConfigError."""
    try:
        prior = L.parse_target_prior(spec, np.asarray(train_counts), key="METHOD.TEST_TARGET_PRIOR")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return prior.to(torch.float32)


def __getattr__(name: str):
    if name == "METHODS":  # the dict that METHOD_REGISTRY replaced
        return deprecated_dict(METHOD_REGISTRY, "lt_detectron.classification.methods.METHODS", "METHOD_REGISTRY")
    if name == "NormedLinear":  # the classification-only cosine classifier before lt_detectron.layers existed
        warnings.warn(
            "lt_detectron.classification.methods.NormedLinear is deprecated; use "
            "lt_detectron.layers.CosineLinear(in_features, out_features, init='uniform_renorm').",
            DeprecationWarning,
            stacklevel=2,
        )
        return _NormedLinear
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _NormedLinear(CosineLinear):
    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, init="uniform_renorm")


def drw_start_epoch(cfg, forced: bool = False) -> int:
    """Epoch at which deferred re-weighting starts, or -1 when it is off.

    On when `forced` (ldam_drw) or METHOD.DRW.ENABLED; METHOD.DRW.START_EPOCH -1 is Cao et al.'s 160 of 200, i.e.
    round(LDAM_DEFAULTS.drw_start_fraction * SOLVER.EPOCHS).
    """
    c = cfg.METHOD.DRW
    if not (forced or c.ENABLED):
        return -1
    start = int(c.START_EPOCH)
    return start if start >= 0 else int(round(L.LDAM_DEFAULTS.drw_start_fraction * cfg.SOLVER.EPOCHS))


class ClassificationMethod(nn.Module):
    """Base class. Subclasses set up heads in `__init__` and override `training_loss` / `inference_logits`.

    Parameters of a method (extra heads) are optimised with the model's and saved in checkpoints; non-tensor
    state (risk balancer, eps tracker) travels through `get_extra_state` / `set_extra_state`.
    """

    name = "base"
    # Which prior the inference logits carry, for target-prior injection in the shifted-prior evaluation
    # (metrics.evaluate prior_injection): "source" (trained on the long-tailed prior, e.g. CE) or "balanced"
    # (re-weighted, re-sampled or prior-corrected, so the logits are for the uniform prior).
    prior_kind = "source"

    def __init__(self, cfg, model: nn.Module, train_counts: np.ndarray):
        super().__init__()
        counts = np.asarray(train_counts, dtype=np.int64)
        self.num_classes = len(counts)
        self.register_buffer("counts", torch.as_tensor(counts, dtype=torch.long), persistent=False)
        self.register_buffer("source_prior", L.prior_from_counts(counts, dtype=torch.float32), persistent=False)
        self.register_buffer("target_prior", parse_target_prior(cfg.METHOD.TEST_TARGET_PRIOR, counts), persistent=False)

    def training_loss(
        self, model: nn.Module, images: Tensor, targets: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def inference_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        """Logits whose softmax is the prediction for the test prior (uniform unless METHOD.TEST_TARGET_PRIOR says)."""
        return model(images)

    def with_target_prior(self, target_prior: Tensor | None) -> "ClassificationMethod":
        """Set p_t used at inference (shifted-prior evaluation; None = the configured one). Returns self."""
        if target_prior is not None:
            self.target_prior = target_prior.to(self.target_prior)
        return self

    def balanced_sampling(self, epoch: int) -> bool:
        """Whether this method needs class-balanced batches at `epoch` (M2m after its deferred start)."""
        return False

    @classmethod
    def prepare(cls, cfg, data, training: bool = True, **given: Any) -> MethodInputs:
        """Inputs this method needs from the dataset (`data`: a classification dataset bundle) before it is built;
        `given` holds inputs the caller already has (e.g. M2m's `frozen_classifier`). Default: none."""
        return MethodInputs()


class LossMethod(ClassificationMethod):
    """One loss of `lt_detectron.losses.build_loss` on `model(x)`, with optional deferred re-weighting (DRW).

    ce, cb_ce, focal, cb_focal, ldam, ldam_drw, balanced_softmax, and pc_softmax (CE training, PC-Softmax at
    inference; Hong et al., CVPR 2021, arXiv:2012.00321).
    """

    def __init__(
        self,
        cfg,
        model: nn.Module,
        train_counts: np.ndarray,
        loss_name: str,
        inference: str = "plain",
        drw: bool = False,
        **loss_kwargs: Any,
    ):
        super().__init__(cfg, model, train_counts)
        self.name = cfg.METHOD.NAME
        self.loss = L.build_loss(loss_name, counts=np.asarray(train_counts), **loss_kwargs)
        self.inference = inference  # "plain" | "scaled" (LDAM: s * cos) | "prior" (z + log p_t) | "pc" (PC-Softmax)
        self.scale = float(cfg.METHOD.LDAM.SCALE)
        self.drw = L.DeferredReweighting(self.counts.cpu(), drw_start_epoch(cfg, drw), float(cfg.METHOD.DRW.BETA))
        self.drw_start = self.drw.start
        balanced = loss_name in ("cb", "cb_focal", "balanced_softmax", "lade") or inference in ("prior", "pc")
        self.prior_kind = "balanced" if balanced or self.drw_start >= 0 else "source"
        if self.drw_start >= 0 and loss_name in ("cb", "cb_focal"):
            raise ConfigError(
                f"METHOD.DRW.ENABLED with method {self.name!r}: the loss is already class-weighted; use DRW with "
                "ce/focal/ldam or set METHOD.DRW.ENABLED False"
            )
        if self.drw_start >= 0 and not self.loss.per_example:
            raise ConfigError(f"DRW needs a per-example loss; {loss_name!r} is not (set METHOD.DRW.ENABLED False)")
        if inference == "scaled":
            model.classifier = CosineLinear(model.feat_dim, self.num_classes, init="uniform_renorm")

    def training_loss(self, model, images, targets, ctx):
        logits = model(images)
        weights = self._drw_weights(ctx.epoch)
        if weights is None:
            return self.loss(logits, targets), {}
        # CB convention (docs/methods.md#conventions): batch mean of the weighted per-example losses.
        weights = weights.to(device=logits.device, dtype=logits.dtype)
        return (weights[targets] * self.loss(logits, targets, reduction="none")).mean(), {"drw": 1.0}

    def _drw_weights(self, epoch: int) -> Tensor | None:
        return self.drw.weights(epoch)

    def inference_logits(self, model, images):
        logits = model(images)
        if self.inference == "scaled":
            return self.scale * logits
        if self.inference == "prior":  # the logits already exclude the source prior (Hong et al. 2021 eq. 17)
            return L.adjust_logits(
                logits, torch.full_like(self.source_prior, 1.0 / self.num_classes), self.target_prior
            )
        if self.inference == "pc":
            return L.adjust_logits(logits, self.source_prior, self.target_prior)
        return logits


class LDAMethod(ClassificationMethod):
    """LDA: unbalanced + balanced linear classifiers, projection head, adaptive risk balance.

    Peng et al., ACM MM 2021, arXiv:2110.02686.

    `model.classifier` becomes the balanced classifier g_b, so `model(x)` is already the inference output.
    """

    name = "lda"
    prior_kind = "balanced"

    def __init__(self, cfg, model: nn.Module, train_counts: np.ndarray):
        super().__init__(cfg, model, train_counts)
        c = cfg.METHOD.LDA
        d = model.feat_dim
        model.classifier = nn.Linear(d, self.num_classes)  # g_b
        self.unbalanced = nn.Linear(d, self.num_classes)  # g_u
        try:
            self.projection = projection_head(c.PROJ_HEAD, d, c.PROJ_DIM)
        except ValueError as err:
            raise ConfigError(f"METHOD.LDA.PROJ_HEAD: {err}") from None
        # WINDOW 0: K = max(1, N / (n_min * B)) computed by the balancer.
        self.lda_loss = L.LDALoss(
            np.asarray(train_counts),
            gamma=float(c.GAMMA),
            window=int(c.WINDOW) or None,
            batch_size=int(cfg.SOLVER.BATCH_SIZE),
            lambda_u=float(c.LAMBDA_U),
            lambda_b=float(c.LAMBDA_B),
            lambda_d=float(c.LAMBDA_D),
            margin=float(c.MARGIN),
            pair_weights=bool(c.PAIR_WEIGHTS),
            alpha_ramp=str(c.ALPHA_RAMP),
            fixed_alpha=float(c.FIXED_ALPHA),
        )

    @property
    def balancer(self) -> L.RiskBalancer:
        return self.lda_loss.balancer

    def training_loss(self, model, images, targets, ctx):
        features = model.backbone(images)
        out = self.lda_loss(self.unbalanced(features), model.classifier(features), self.projection(features), targets)
        return out.loss, {
            "loss_u": out.terms.unbalanced.item(),
            "loss_b": out.terms.balanced.item(),
            "lda_alpha": out.alpha,
            "lda_intra": out.terms.intra.detach().item(),
            "lda_inter": out.terms.inter.detach().item(),
        }

    def get_extra_state(self) -> dict:
        return {"balancer": self.balancer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.balancer.load_state_dict(state["balancer"])


class LADEMethod(LossMethod):
    """LADE: LADE-CE + alpha * LADER in training; `z + log p_t` at inference (eq. 17).

    Hong et al., CVPR 2021, arXiv:2012.00321.
    """

    def __init__(self, cfg, model, train_counts):
        c = cfg.METHOD.LADE
        super().__init__(
            cfg,
            model,
            train_counts,
            "lade",
            inference="prior",
            alpha=float(c.ALPHA),
            lam=float(c.LAMBDA),
            importance=c.IMPORTANCE,
        )


class M2mMethod(ClassificationMethod):
    """M2m (Kim et al., CVPR 2020, arXiv:2004.00431): plain CE until `START_EPOCH`, then class-balanced batches
    with major-to-minor translation.

    The frozen ERM classifier g is given by `frozen_classifier` (the trainer loads it; see `M2M.G_CHECKPOINT`).
    It is kept out of this module's parameters and state dict: it is an input, not something trained or resumed.
    """

    name = "m2m"
    prior_kind = "balanced"  # class-balanced batches after the deferred start

    def __init__(self, cfg, model, train_counts, frozen_classifier: nn.Module | None = None):
        super().__init__(cfg, model, train_counts)
        c = cfg.METHOD.M2M
        self.start_epoch = int(c.START_EPOCH)
        self.config = M2mConfig(
            steps=int(c.STEPS),
            step_size=float(c.STEP_SIZE),
            beta=float(c.BETA),
            lam=float(c.LAMBDA),
            gamma=float(c.GAMMA),
            noise_std=float(c.NOISE_STD),
        )
        self.ce = L.build_loss("ce")
        self._g: list[nn.Module] = []  # a list keeps g out of parameters(), state_dict() and .to()
        if frozen_classifier is not None:
            self.set_frozen_classifier(frozen_classifier)

    @classmethod
    def prepare(cls, cfg, data, training: bool = True, **given: Any) -> MethodInputs:
        """g from `given["frozen_classifier"]`, else METHOD.M2M.G_CHECKPOINT, else a CE run trained first
        (`m2m.load_frozen_classifier`); not needed for evaluation only."""
        if not training:
            return MethodInputs()
        g = given.get("frozen_classifier")
        return MethodInputs(
            extras={"frozen_classifier": g if g is not None else load_frozen_classifier(cfg, data.num_classes)}
        )

    def set_frozen_classifier(self, g: nn.Module) -> None:
        g.eval().requires_grad_(False)
        self._g[:] = [g]

    def balanced_sampling(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def training_loss(self, model, images, targets, ctx):
        stats: dict[str, float] = {}
        if ctx.epoch >= self.start_epoch:
            if not self._g:
                raise RuntimeError(
                    "m2m: no frozen classifier g was given (METHOD.M2M.G_CHECKPOINT); the trainer "
                    "loads it before training"
                )
            g = self._g[0].to(images.device)
            images, stats = m2m_batch(g, model, images, targets, self.counts, self.config)
        return self.ce(model(images), targets), stats


class MetaMethod(ClassificationMethod):
    """Meta-learned conditional weights (Jamal et al., CVPR 2020, arXiv:2003.10780,
    Algorithm 1) on a CE / focal / LDAM loss.

    Stage 1 (epochs before META.START_EPOCH): the plain loss. Stage 2: per-example weights w_y + eps_i from
    `lt_detectron.meta.MetaReweighter` against a class-balanced dev batch; the returned loss is the weighted one
    the optimizer steps on. `META.L2RW` is the L2RW ablation, `META.MODE: classifier` meta-differentiates only
    the classifier on detached features (Jamal et al. 2020 §5.3).
    """

    def __init__(self, cfg, model, train_counts, base_loss: str, dev_data=None):
        super().__init__(cfg, model, train_counts)
        from lt_detectron import meta as M  # only the meta methods need torch.func

        c = cfg.METHOD.META
        self.base = LossMethod(cfg, model, train_counts, **_BASE_LOSSES[base_loss](cfg))
        self.prior_kind = "balanced"
        self.start_epoch = M.stage_two_start(int(c.START_EPOCH), cfg.SOLVER.STEPS)
        self.follow_lr = float(c.INNER_LR) <= 0  # eta = the optimizer's current lr
        if c.MODE not in ("full", "classifier"):
            raise ConfigError(f"METHOD.META.MODE={c.MODE!r}; known: full, classifier")
        self.mode = c.MODE
        self.reweighter = M.MetaReweighter(
            L.class_weights(np.asarray(train_counts), kind="effective_number", beta=c.BETA),
            inner_lr=float(c.INNER_LR) if not self.follow_lr else float(cfg.SOLVER.BASE_LR),
            eps_lr=float(c.EPS_LR),
            l2rw=bool(c.L2RW),
        )
        if dev_data is None or len(dev_data) == 0:
            raise ConfigError(f"{cfg.METHOD.NAME}: no development set; see METHOD.META.DEV_SOURCE / DEV_PER_CLASS")
        self.dev_data = dev_data
        self.dev_sampler = M.DevBatchSampler(np.arange(len(dev_data)), int(c.DEV_BATCH_SIZE), seed=int(cfg.SEED))

    @classmethod
    def prepare(cls, cfg, data, training: bool = True, **given: Any) -> MethodInputs:
        """The class-balanced development set D of the meta methods (Jamal et al. 2020 §5), k = META.DEV_PER_CLASS
        per class, as `dev_data`.

        DEV_SOURCE "train": held out of the training split (CIFAR-LT, iNat), which shrinks the training set and its
        counts n_c; "val": taken from the validation split (ImageNet-LT, Places-LT, digits-LT's val_per_class).
        """
        from torch.utils.data import Subset

        from lt_detectron.meta import build_dev_split

        meta = cfg.METHOD.META
        k = int(meta.DEV_PER_CLASS)
        if meta.DEV_SOURCE == "train":
            labels = np.asarray(data.train.targets, dtype=np.int64)
            split = build_dev_split(labels, k, num_classes=data.num_classes, seed=cfg.SEED)
            return MethodInputs(
                train_indices=split.train_indices, extras={"dev_data": Subset(data.train, split.dev_indices.tolist())}
            )
        if meta.DEV_SOURCE == "val":
            if data.val is None:
                raise ConfigError(
                    f"METHOD.META.DEV_SOURCE=val but dataset {cfg.DATASET.NAME!r} has no val split; "
                    "use DEV_SOURCE train (or DATASET.ARGS.VAL_PER_CLASS for digits_lt)"
                )
            labels = np.asarray(data.val.targets, dtype=np.int64)
            rng = np.random.default_rng(cfg.SEED)
            picks = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in range(data.num_classes)]
            return MethodInputs(extras={"dev_data": Subset(data.val, np.sort(np.concatenate(picks)).tolist())})
        raise ConfigError(f"METHOD.META.DEV_SOURCE={meta.DEV_SOURCE!r}; known: train, val")

    def inference_logits(self, model, images):
        return self.base.inference_logits(model, images)

    def _dev_batch(self, device: torch.device) -> tuple[Tensor, Tensor]:
        items = [self.dev_data[int(i)] for i in self.dev_sampler.next_batch()]
        images = torch.stack([torch.as_tensor(x) for x, _ in items]).to(device)
        return images, torch.as_tensor([int(y) for _, y in items], device=device)

    def training_loss(self, model, images, targets, ctx):
        if ctx.epoch < self.start_epoch:
            return self.base.training_loss(model, images, targets, ctx)
        if self.follow_lr:
            self.reweighter.inner_lr = ctx.lr
        dev_images, dev_targets = self._dev_batch(images.device)

        def per_example(logits: Tensor, y: Tensor) -> Tensor:
            return self.base.loss(logits, y, reduction="none")

        if self.mode == "full":
            result = self.reweighter.step(
                model,
                per_example,
                images,
                targets,
                dev_images,
                dev_targets,
                iteration=ctx.global_step,
                compute_loss=True,
            )
            loss = result.loss
        else:  # meta-gradient through the classifier only; the real step still trains the whole network
            features = model.backbone(images)
            with torch.no_grad():
                dev_features = model.backbone(dev_images)
            result = self.reweighter.step(
                model.classifier,
                per_example,
                features.detach(),
                targets,
                dev_features,
                dev_targets,
                iteration=ctx.global_step,
            )
            loss = self.reweighter.weighted_loss(per_example(model.classifier(features), targets), result)
        return loss, {"meta_dev_loss": float(result.dev_loss), "meta_eps_mean": float(result.eps.mean())}

    def eps_history(self) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, per-class mean eps) over training (Jamal et al. 2020 Figure 3)."""
        return self.reweighter.tracker.history()

    def get_extra_state(self) -> dict:
        return {"reweighter": self.reweighter.state_dict(), "dev_sampler": self.dev_sampler.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        # eta follows the lr schedule: take the saved value so the hyper-parameter check does not warn.
        self.reweighter.inner_lr = state["reweighter"]["hparams"]["inner_lr"]
        self.reweighter.load_state_dict(state["reweighter"])
        self.dev_sampler.load_state_dict(state["dev_sampler"])


def _cb_beta(cfg) -> float | None:
    return cfg.METHOD.CB.BETA


def _focal_kwargs(cfg) -> dict:
    return {"gamma": float(cfg.METHOD.FOCAL.GAMMA), "form": cfg.METHOD.FOCAL.FORM}


def _ldam_kwargs(cfg) -> dict:
    return {"max_margin": float(cfg.METHOD.LDAM.MAX_MARGIN), "scale": float(cfg.METHOD.LDAM.SCALE)}


# Base losses of the meta methods: LossMethod keyword arguments.
_BASE_LOSSES: dict[str, Callable[[Any], dict]] = {
    "ce": lambda cfg: {"loss_name": "ce"},
    "focal": lambda cfg: {"loss_name": "focal", **_focal_kwargs(cfg)},
    "ldam": lambda cfg: {"loss_name": "ldam", "inference": "scaled", **_ldam_kwargs(cfg)},
}

# METHOD.NAME -> builder(cfg, model, train_counts, **extras) -> ClassificationMethod. A user project adds a method
# with `@METHOD_REGISTRY.register("name")` on such a builder (or on a ClassificationMethod subclass with that
# signature); `extras` are what `prepare_method` returned (M2m's frozen_classifier, the meta methods' dev_data).
METHOD_REGISTRY = Registry("LT_CLS_METHOD")


@METHOD_REGISTRY.register("ce")
def _ce(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "ce")


@METHOD_REGISTRY.register("cb_ce")
def _cb_ce(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "cb", beta=_cb_beta(cfg))


@METHOD_REGISTRY.register("focal")
def _focal(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "focal", **_focal_kwargs(cfg))


@METHOD_REGISTRY.register("cb_focal")
def _cb_focal(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "cb_focal", beta=_cb_beta(cfg), **_focal_kwargs(cfg))


@METHOD_REGISTRY.register("ldam")
def _ldam(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "ldam", inference="scaled", **_ldam_kwargs(cfg))


@METHOD_REGISTRY.register("ldam_drw")
def _ldam_drw(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "ldam", inference="scaled", drw=True, **_ldam_kwargs(cfg))


@METHOD_REGISTRY.register("balanced_softmax")
def _balanced_softmax(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "balanced_softmax", inference="prior")


@METHOD_REGISTRY.register("pc_softmax")
def _pc_softmax(cfg, m, n, **kw):
    return LossMethod(cfg, m, n, "ce", inference="pc")


@METHOD_REGISTRY.register("lade")
def _lade(cfg, m, n, **kw):
    return LADEMethod(cfg, m, n)


@METHOD_REGISTRY.register("lda")
def _lda(cfg, m, n, **kw):
    return LDAMethod(cfg, m, n)


@METHOD_REGISTRY.register("meta_ce")
def _meta_ce(cfg, m, n, **kw):
    return MetaMethod(cfg, m, n, "ce", **kw)


@METHOD_REGISTRY.register("meta_focal")
def _meta_focal(cfg, m, n, **kw):
    return MetaMethod(cfg, m, n, "focal", **kw)


@METHOD_REGISTRY.register("meta_ldam")
def _meta_ldam(cfg, m, n, **kw):
    return MetaMethod(cfg, m, n, "ldam", **kw)


@METHOD_REGISTRY.register("m2m")
def _m2m(cfg, m, n, **kw):
    return M2mMethod(cfg, m, n, **kw)


# METHOD.NAME -> the class whose `prepare` supplies the inputs of a registered builder function. A method registered
# as a ClassificationMethod subclass uses its own `prepare`; any other gets none (ClassificationMethod.prepare).
METHOD_CLASSES: dict[str, type[ClassificationMethod]] = {
    "meta_ce": MetaMethod,
    "meta_focal": MetaMethod,
    "meta_ldam": MetaMethod,
    "m2m": M2mMethod,
}


def prepare_method(cfg, data, training: bool = True, **given: Any) -> MethodInputs:
    """What `cfg.METHOD.NAME` needs from the data before `build_method` (see `ClassificationMethod.prepare`)."""
    name = cfg.METHOD.NAME
    builder = METHOD_REGISTRY.get(name) if name in METHOD_REGISTRY else None
    if isinstance(builder, type) and issubclass(builder, ClassificationMethod):
        return builder.prepare(cfg, data, training=training, **given)
    return METHOD_CLASSES.get(name, ClassificationMethod).prepare(cfg, data, training=training, **given)


def build_method(cfg, model: nn.Module, train_counts: np.ndarray, **extras: Any) -> ClassificationMethod:
    """The method named by `cfg.METHOD.NAME`, set up on `model` (whose classifier it may replace)."""
    name = cfg.METHOD.NAME
    if name not in METHOD_REGISTRY:
        raise ConfigError(f"unknown METHOD.NAME {name!r}; known methods: {', '.join(METHOD_REGISTRY.names())}")
    method = METHOD_REGISTRY.get(name)(cfg, model, train_counts, **extras)
    method.name = name
    return method
