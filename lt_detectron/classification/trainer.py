"""The config-driven classification trainer: schedules, DRW/DRS deferral, logging, atomic checkpoints, exact resume.

Exact resume: a checkpoint holds the model, method (extra heads, risk balancer, eps tracker), optimizer, scheduler,
the python/numpy/torch RNG states and the position in the epoch. Sample order is a pure function of
(SEED, epoch), so resuming mid-epoch skips the batches already seen and continues with the same order; with
DATALOADER.NUM_WORKERS = 0 the resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import random
from collections import defaultdict
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, Subset

from lt_detectron.utils.io import atomic_write

from .config import CfgNode, ConfigError
from .methods import ClassificationMethod, StepContext, build_method

__all__ = [
    "ClassificationTrainer",
    "EpochSampler",
    "build_lr_lambda",
    "atomic_torch_save",
    "seed_everything",
    "train_frozen_classifier",
]

logger = logging.getLogger(__name__)

CHECKPOINT = "last.pth"
FINAL_WEIGHTS = "model_final.pth"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: a crash never leaves half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def _atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), binary=False)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EpochSampler(Sampler[int]):
    """Sample order fixed by (seed, epoch): a permutation, or class-balanced draws (class uniformly, then an image
    of it, with replacement). `set_epoch(epoch, skip)` starts `skip` samples into that epoch's order (resume)."""

    def __init__(self, labels: list[int] | np.ndarray, seed: int, balanced: bool = False):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed = int(seed)
        self.balanced = balanced
        self.epoch = 0
        self.skip = 0
        self._by_class = [np.flatnonzero(self.labels == c) for c in np.unique(self.labels)]

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.labels)
        if not self.balanced:
            return rng.permutation(n)
        classes = rng.integers(len(self._by_class), size=n)
        picks = rng.random(n)
        return np.array([self._by_class[c][int(p * len(self._by_class[c]))] for c, p in zip(classes, picks)])

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.skip :].tolist())

    def __len__(self) -> int:
        return len(self.labels) - self.skip


def build_lr_lambda(cfg: CfgNode, iters_per_epoch: int):
    """Per-iteration lr factor: linear warm-up, then step decay (x GAMMA at each epoch of STEPS) or cosine to 0."""
    s = cfg.SOLVER
    total = s.EPOCHS * iters_per_epoch
    warmup = int(s.WARMUP_EPOCHS * iters_per_epoch)
    steps = [int(e * iters_per_epoch) for e in s.STEPS]
    if s.SCHEDULE not in ("step", "cosine"):
        raise ConfigError(f"SOLVER.SCHEDULE={s.SCHEDULE!r}; known: step, cosine")

    def factor(it: int) -> float:
        if s.SCHEDULE == "step":
            value = s.GAMMA ** sum(it >= step for step in steps)
        else:
            value = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(1, total)))
        if it < warmup:
            alpha = it / warmup
            value *= s.WARMUP_FACTOR * (1.0 - alpha) + alpha
        return value

    return factor


def _build_optimizer(cfg: CfgNode, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    s = cfg.SOLVER
    if s.OPTIMIZER == "sgd":
        return torch.optim.SGD(
            params, lr=s.BASE_LR, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY, nesterov=s.NESTEROV
        )
    if s.OPTIMIZER == "adam":
        return torch.optim.Adam(params, lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY)
    raise ConfigError(f"SOLVER.OPTIMIZER={s.OPTIMIZER!r}; known: sgd, adam")


def _dataset_kwargs(cfg: CfgNode) -> dict:
    return {k.lower(): v for k, v in cfg.DATASET.ARGS.items()}


class ClassificationTrainer:
    """Train and evaluate one classification run described by a config (see config.get_cfg for every key)."""

    def __init__(self, cfg: CfgNode, frozen_classifier: nn.Module | None = None, training: bool = True):
        """`frozen_classifier`: M2m's g (default: METHOD.M2M.G_CHECKPOINT, trained first when empty).
        `training=False` (evaluation only) skips what only training needs, such as M2m's g."""
        from .datasets import build_dataset
        from .models import build_model

        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        os.makedirs(self.output_dir, exist_ok=True)
        self.device = torch.device(cfg.DEVICE)
        try:
            self.data = build_dataset(cfg.DATASET.NAME, root=cfg.DATASET.ROOT or None, **_dataset_kwargs(cfg))
        except TypeError as err:  # an unknown DATASET.ARGS key
            raise ConfigError(f"DATASET.ARGS for {cfg.DATASET.NAME!r}: {err}; fix DATASET.ARGS") from None
        self.train_set = self.data.train
        self.train_labels = np.asarray(self.data.train.targets, dtype=np.int64)
        self.train_counts = np.asarray(self.data.train_counts)
        extras: dict[str, Any] = {}
        # Before seeding: training g (when needed) must not shift this run's RNG.
        if cfg.METHOD.NAME == "m2m" and training:
            extras["frozen_classifier"] = frozen_classifier or load_frozen_classifier(cfg, self.data.num_classes)
        if cfg.METHOD.NAME.startswith("meta_"):
            extras["dev_data"] = self._meta_dev_set()
        seed_everything(cfg.SEED)
        try:
            self.model = build_model(
                cfg.MODEL.NAME, self.data.num_classes, **{k.lower(): v for k, v in cfg.MODEL.ARGS.items()}
            )
        except TypeError as err:
            raise ConfigError(f"MODEL.ARGS for {cfg.MODEL.NAME!r}: {err}; fix MODEL.ARGS") from None
        self.method: ClassificationMethod = build_method(cfg, self.model, self.train_counts, **extras)
        self.model.to(self.device)
        self.method.to(self.device)
        # Each parameter once: methods may keep references to model modules.
        params = list({id(p): p for p in [*self.model.parameters(), *self.method.parameters()]}.values())
        self.optimizer = _build_optimizer(cfg, params)

        self.sampler = EpochSampler(self.train_labels, seed=cfg.SEED)
        self.batch_sampler = BatchSampler(self.sampler, cfg.SOLVER.BATCH_SIZE, drop_last=cfg.DATALOADER.DROP_LAST)
        self.sampler.set_epoch(0)
        self.iters_per_epoch = len(self.batch_sampler)
        if self.iters_per_epoch == 0:
            raise ConfigError(
                f"SOLVER.BATCH_SIZE={cfg.SOLVER.BATCH_SIZE} with DROP_LAST leaves no batch from "
                f"{len(self.train_set)} training images; lower the batch size"
            )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, build_lr_lambda(cfg, self.iters_per_epoch))
        self.epoch = 0
        self.iter_in_epoch = 0
        self.global_step = 0
        self._writer = None

    # ----------------------------------------------------------------------------------------------- data
    def balanced_sampling(self, epoch: int) -> bool:
        d = self.cfg.DATALOADER
        if d.SAMPLER not in ("instance", "class_balanced"):
            raise ConfigError(f"DATALOADER.SAMPLER={d.SAMPLER!r}; known: instance, class_balanced")
        drs = d.DRS_START_EPOCH >= 0 and epoch >= d.DRS_START_EPOCH
        return d.SAMPLER == "class_balanced" or drs or self.method.balanced_sampling(epoch)

    def _train_loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.balanced = self.balanced_sampling(epoch)
        self.sampler.set_epoch(epoch, skip_batches * self.cfg.SOLVER.BATCH_SIZE)
        # A private generator: creating the loader must not consume the global RNG (that would break resume).
        generator = torch.Generator().manual_seed(self.cfg.SEED * 100_003 + epoch)
        return DataLoader(
            self.train_set,
            batch_sampler=self.batch_sampler,
            num_workers=self.cfg.DATALOADER.NUM_WORKERS,
            generator=generator,
            pin_memory=self.device.type == "cuda",
        )

    def _meta_dev_set(self) -> Dataset:
        """The class-balanced development set D of the meta methods (Jamal et al. 2020 §5),
        k = META.DEV_PER_CLASS per class.

        DEV_SOURCE "train": held out of the training split (CIFAR-LT, iNat), which shrinks the training set and its
        counts n_c; "val": taken from the validation split (ImageNet-LT, Places-LT, digits-LT's val_per_class).
        """
        from lt_detectron.meta import build_dev_split

        meta = self.cfg.METHOD.META
        k = int(meta.DEV_PER_CLASS)
        if meta.DEV_SOURCE == "train":
            split = build_dev_split(self.train_labels, k, num_classes=self.data.num_classes, seed=self.cfg.SEED)
            dev = Subset(self.data.train, split.dev_indices.tolist())
            self.train_set = Subset(self.data.train, split.train_indices.tolist())
            self.train_labels = self.train_labels[split.train_indices]
            self.train_counts = np.bincount(self.train_labels, minlength=self.data.num_classes)
            return dev
        if meta.DEV_SOURCE == "val":
            if self.data.val is None:
                raise ConfigError(
                    f"METHOD.META.DEV_SOURCE=val but dataset {self.cfg.DATASET.NAME!r} has no val split; "
                    "use DEV_SOURCE train (or DATASET.ARGS.VAL_PER_CLASS for digits_lt)"
                )
            labels = np.asarray(self.data.val.targets, dtype=np.int64)
            rng = np.random.default_rng(self.cfg.SEED)
            picks = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in range(self.data.num_classes)]
            return Subset(self.data.val, np.sort(np.concatenate(picks)).tolist())
        raise ConfigError(f"METHOD.META.DEV_SOURCE={meta.DEV_SOURCE!r}; known: train, val")

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint_path(self) -> str:
        return os.path.join(self.output_dir, CHECKPOINT)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "iter_in_epoch": self.iter_in_epoch,
            "global_step": self.global_step,
            "rng": _rng_state(),
            "config": self.cfg.dump(),
        }

    def save_checkpoint(self) -> str:
        path = self.checkpoint_path()
        atomic_torch_save(self.state_dict(), path)
        return path

    def load_checkpoint(self, path: str, weights_only: bool = False) -> None:
        """Restore a checkpoint; `weights_only` loads just the model and method (evaluation)."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path} does not exist; train first or pass --checkpoint PATH")
        state = torch.load(path, map_location=self.device)
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError(
                f"checkpoint {path}: expected a dict with a 'model' entry (a file written by this trainer)"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.method.load_state_dict(state.get("method", {}))
        except RuntimeError as err:
            raise ValueError(
                f"checkpoint {path} does not fit MODEL.NAME={self.cfg.MODEL.NAME!r} with METHOD.NAME="
                f"{self.cfg.METHOD.NAME!r} ({str(err).splitlines()[0]}); evaluate it with the config it "
                "was trained with"
            ) from None
        if weights_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.iter_in_epoch, self.global_step = state["epoch"], state["iter_in_epoch"], state["global_step"]
        _set_rng_state(state["rng"])
        self._truncate_metrics(self.global_step)

    def resume_or_load(self, resume: bool = True) -> bool:
        """Resume from OUTPUT_DIR/last.pth when it exists and `resume`; returns whether it did."""
        if resume and os.path.isfile(self.checkpoint_path()):
            self.load_checkpoint(self.checkpoint_path())
            logger.info("resumed from %s at epoch %d, step %d", self.checkpoint_path(), self.epoch, self.global_step)
            return True
        return False

    # --------------------------------------------------------------------------------------------- logging
    def _metrics_path(self) -> str:
        return os.path.join(self.output_dir, "metrics.csv")

    def log_scalars(self, scalars: dict[str, float], step: int, epoch: int) -> None:
        """Append to metrics.csv (long format: epoch, step, name, value) and TensorBoard."""
        path = self._metrics_path()
        new = not os.path.isfile(path)
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", "step", "name", "value"])
            for name, value in scalars.items():
                writer.writerow([epoch, step, name, f"{value:.6g}"])
        if self.cfg.LOG.TENSORBOARD:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(os.path.join(self.output_dir, "tensorboard"))
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop rows logged after the checkpoint being resumed (they will be logged again)."""
        path = self._metrics_path()
        if not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if int(r[1]) <= step]
        _atomic_write_text(path, "".join(",".join(r) + "\n" for r in kept))

    # -------------------------------------------------------------------------------------------- training
    def train(self, max_steps: int | None = None, resume: bool = True) -> dict | None:
        """Train to SOLVER.EPOCHS (or stop after `max_steps` global steps, checkpointing there).

        Returns the final evaluation, or None when stopped early by `max_steps`.
        """
        cfg = self.cfg
        if not self.resume_or_load(resume) and self.global_step == 0 and os.path.isfile(self._metrics_path()):
            os.remove(self._metrics_path())  # a fresh run in a used folder: do not append to the old run's rows
        _atomic_write_text(os.path.join(self.output_dir, "config.yaml"), cfg.dump())
        from tqdm import tqdm

        while self.epoch < cfg.SOLVER.EPOCHS:
            epoch = self.epoch
            self.model.train()
            self.method.train()
            sums: dict[str, float] = defaultdict(float)
            seen = 0
            bar = tqdm(
                self._train_loader(epoch, self.iter_in_epoch),
                total=self.iters_per_epoch,
                initial=self.iter_in_epoch,
                desc=f"epoch {epoch + 1}/{cfg.SOLVER.EPOCHS}",
                disable=not cfg.LOG.PROGRESS_BAR,
                leave=False,
            )
            for images, targets in bar:
                logs = self.run_step(images, targets)
                for k, v in logs.items():
                    sums[k] += v
                seen += 1
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
                # Stop before the next batch is loaded: its augmentation would consume RNG the resume must replay.
                mid_epoch = self.iter_in_epoch < self.iters_per_epoch
                if max_steps is not None and self.global_step >= max_steps and mid_epoch:
                    self.save_checkpoint()
                    bar.close()
                    return None
            self.epoch, self.iter_in_epoch = epoch + 1, 0
            if seen:
                self.log_scalars({f"train/{k}": v / seen for k, v in sums.items()}, self.global_step, self.epoch)
            period = cfg.TEST.EVAL_PERIOD
            if period > 0 and self.epoch % period == 0 and self.epoch < cfg.SOLVER.EPOCHS:
                self.evaluate(tag=f"epoch_{self.epoch:04d}")
            stop = max_steps is not None and self.global_step >= max_steps and self.epoch < cfg.SOLVER.EPOCHS
            if stop or (cfg.CHECKPOINT_PERIOD > 0 and self.epoch % cfg.CHECKPOINT_PERIOD == 0):
                self.save_checkpoint()
            if stop:
                return None
        atomic_torch_save(
            {"model": self.model.state_dict(), "method": self.method.state_dict(), "config": cfg.dump()},
            os.path.join(self.output_dir, FINAL_WEIGHTS),
        )
        self.save_checkpoint()
        result = self.evaluate(tag="final")
        self.close()
        return result

    def run_step(self, images: Tensor, targets: Tensor) -> dict[str, float]:
        images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        lr = self.optimizer.param_groups[0]["lr"]
        ctx = StepContext(epoch=self.epoch, global_step=self.global_step, lr=lr)
        loss, logs = self.method.training_loss(self.model, images, targets, ctx)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{self.cfg.METHOD.NAME}: non-finite loss {loss.item()} at epoch {self.epoch}, "
                f"step {self.global_step} (lr {lr:g}); lower SOLVER.BASE_LR or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        self.iter_in_epoch += 1
        return {"loss": loss.item(), "lr": lr, **logs}

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, dataset=None, target_prior: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inference logits and labels on `dataset` (default: the test split)."""
        dataset = self.data.test if dataset is None else dataset
        self.model.eval()
        self.method.eval()
        saved = self.method.target_prior.clone()
        self.method.with_target_prior(target_prior)
        loader = DataLoader(
            dataset, batch_size=self.cfg.TEST.BATCH_SIZE, shuffle=False, num_workers=self.cfg.DATALOADER.NUM_WORKERS
        )
        logits, labels = [], []
        try:
            for images, targets in loader:
                logits.append(self.method.inference_logits(self.model, images.to(self.device)).float().cpu())
                labels.append(torch.as_tensor(targets))
        finally:
            self.method.target_prior = saved
        return torch.cat(logits), torch.cat(labels)

    def evaluate(self, tag: str = "final") -> dict:
        """metrics.evaluate on the test split; OUTPUT_DIR/eval/<tag>/eval.json (+ PNGs with TEST.PLOTS); scalars logged.

        The shifted-prior accuracies are reported with and without target-prior injection (Hong et al., CVPR 2021,
        arXiv:2012.00321, §4.3); the
        injection follows the prior the method's logits carry (`method.prior_kind`).
        """
        from . import metrics, plots

        logits, labels = self.predict()
        # Injection assumes the logits are for the uniform prior; skip it when METHOD.TEST_TARGET_PRIOR already
        # injected one.
        injection = self.method.prior_kind if self.cfg.METHOD.TEST_TARGET_PRIOR == "uniform" else None
        result = metrics.evaluate(
            logits, labels, self.train_counts, ece_bins=self.cfg.TEST.ECE_BINS, prior_injection=injection
        )
        result.update(method=self.cfg.METHOD.NAME, epoch=self.epoch, step=self.global_step)
        out_dir = os.path.join(self.output_dir, "eval", tag)
        if self.cfg.TEST.PLOTS:
            plots.save_evaluation(result, logits, labels, out_dir)
            self._save_eps_history(out_dir)
        else:
            plots.write_json_atomic(result, os.path.join(out_dir, "eval.json"))
        scalars = {
            f"test/{k}": float(v)
            for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step")
        }
        self.log_scalars(scalars, self.global_step, self.epoch)
        return result

    def _save_eps_history(self, out_dir: str) -> None:
        """Meta methods: per-class mean eps over training, json + PNG by shot group (Jamal et al. 2020 Figure 3)."""
        history = getattr(self.method, "eps_history", None)
        if history is None:
            return
        from lt_detectron.meta import plot_eps_by_group

        from . import metrics, plots

        iterations, means = history()
        plots.write_json_atomic(
            {
                "iterations": iterations.tolist(),
                "eps_mean": [[None if np.isnan(v) else float(v) for v in row] for row in means],
            },
            os.path.join(out_dir, "eps_history.json"),
        )
        plot_eps_by_group(iterations, means, metrics.shot_groups(self.train_counts), os.path.join(out_dir, "eps.png"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def g_config(cfg: CfgNode) -> CfgNode:
    """The config that trains M2m's classifier g: the same run with METHOD.NAME ce, under OUTPUT_DIR/m2m_g."""
    g_cfg = copy.deepcopy(cfg)
    g_cfg.defrost()
    g_cfg.METHOD.NAME = "ce"
    g_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "m2m_g")
    g_cfg.TEST.EVAL_PERIOD = 0
    g_cfg.freeze()
    return g_cfg


def train_frozen_classifier(cfg: CfgNode) -> str:
    """Train M2m's g (ERM, same config, method ce) unless its weights already exist; returns their path."""
    g_cfg = g_config(cfg)
    path = os.path.join(g_cfg.OUTPUT_DIR, FINAL_WEIGHTS)
    if not os.path.isfile(path):
        logger.info("M2m: training the ERM classifier g into %s", g_cfg.OUTPUT_DIR)
        ClassificationTrainer(g_cfg).train()
    return path


def load_frozen_classifier(cfg: CfgNode, num_classes: int) -> nn.Module:
    """M2m's g: the same architecture with a linear classifier, weights from METHOD.M2M.G_CHECKPOINT (or trained)."""
    from .models import build_model

    path = cfg.METHOD.M2M.G_CHECKPOINT or train_frozen_classifier(cfg)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"METHOD.M2M.G_CHECKPOINT={path!r} does not exist; give the {FINAL_WEIGHTS} of a CE "
            "run of the same model, or leave it empty to train g first"
        )
    g = build_model(cfg.MODEL.NAME, num_classes, **{k.lower(): v for k, v in cfg.MODEL.ARGS.items()})
    state = torch.load(path, map_location="cpu")
    try:
        g.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except (RuntimeError, KeyError) as err:
        raise ValueError(
            f"METHOD.M2M.G_CHECKPOINT={path!r} does not fit model {cfg.MODEL.NAME!r} with a linear "
            f"classifier ({err}); g must be a CE (method ce) run of the same architecture"
        ) from None
    return g.to(cfg.DEVICE).eval().requires_grad_(False)
