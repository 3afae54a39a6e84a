"""The config-driven classification trainer: a plain loop over Detectron2/fvcore parts, with exact resume.

Parts from the stack: Detectron2's `seed_all_rng`, its `LRMultiplier` over fvcore `ParamScheduler`s (multi-step or
cosine, with `WarmupParamScheduler`'s linear warm-up), and the atomic fvcore checkpointer shared with detection
(`lt_detectron.utils.checkpoint`). Method-specific inputs (M2m's classifier g, the meta methods' dev set) come from
the method's own `prepare` (`methods.prepare_method`), not from here.

Exact resume, what this module adds: a checkpoint holds the model, method (extra heads, risk balancer, eps tracker),
optimizer, scheduler, the python/numpy/torch RNG states (as lists and tensors, so the file loads with
`torch.load(weights_only=True)`) and the position in the epoch. Sample order is a pure function of (SEED, epoch), so
resuming mid-epoch skips the batches already seen and continues with the same order; with DATALOADER.NUM_WORKERS = 0
the resumed run is bit-identical to an uninterrupted one, metrics.csv rows included.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import pickle
import re
from collections import defaultdict
from typing import Any, Iterator

import numpy as np
import torch
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.utils.env import seed_all_rng
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler, ParamScheduler
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Sampler, Subset

from lt_detectron.utils.checkpoint import (
    AtomicCheckpointer,
    CheckpointError,
    read_checkpoint_file,
    rng_states,
    save_through,
    set_rng_states,
    weights_only_safe,
)
from lt_detectron.utils.cli import UserFileNotFoundError
from lt_detectron.utils.io import remove_stale_temporaries, write_text_atomic

from .config import CfgNode, ConfigError, check_config, resolve_device
from .methods import ClassificationMethod, StepContext, build_method, prepare_method

__all__ = ["ClassificationTrainer", "EpochSampler", "build_lr_multiplier", "CHECKPOINT", "FINAL_WEIGHTS"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last"
CHECKPOINT = CHECKPOINT_NAME + ".pth"
FINAL_WEIGHTS = "model_final.pth"


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


def build_lr_multiplier(cfg: CfgNode, iters_per_epoch: int) -> ParamScheduler:
    """The lr factor as an fvcore ParamScheduler of the training progress (iteration / total iterations).

    "step": x GAMMA at each epoch of STEPS; "cosine": half a cosine from 1 to 0 at the last iteration. A warm-up of
    WARMUP_EPOCHS goes linearly from WARMUP_FACTOR x the schedule's start to its value where the warm-up ends
    (Detectron2's WarmupParamScheduler).
    """
    s = cfg.SOLVER
    total = max(1, s.EPOCHS * iters_per_epoch)  # EPOCHS 0 (evaluation only): a constant factor
    warmup = int(s.WARMUP_EPOCHS * iters_per_epoch)
    if s.SCHEDULE == "step":
        steps = [int(e * iters_per_epoch) for e in s.STEPS]
        if any(b <= a for a, b in zip([0, *steps], steps)):
            raise ConfigError(f"SOLVER.STEPS={tuple(s.STEPS)}: epochs must be positive and increasing")
        steps = [step for step in steps if step < total]  # a decay after the last iteration never happens
        sched: ParamScheduler = MultiStepParamScheduler(
            [s.GAMMA**k for k in range(len(steps) + 1)], milestones=steps, num_updates=total
        )
    elif s.SCHEDULE == "cosine":
        sched = CosineParamScheduler(1.0, 0.0)
    else:
        raise ConfigError(f"SOLVER.SCHEDULE={s.SCHEDULE!r}; known: step, cosine")
    if warmup > 0:
        sched = WarmupParamScheduler(sched, s.WARMUP_FACTOR, min(warmup, total) / total)
    return sched


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

    def __init__(self, cfg: CfgNode, training: bool = True, **given: Any):
        """`training=False` (evaluation only) skips what only training needs, such as M2m's g; `given` are inputs
        of the method's `prepare` the caller already has (M2m's `frozen_classifier`)."""
        from .datasets import build_dataset
        from .models import build_model

        self.cfg = check_config(cfg)
        self.output_dir = cfg.OUTPUT_DIR
        # The device and the data are checked before OUTPUT_DIR is touched: a user error there writes nothing.
        self.device = resolve_device(cfg.DEVICE, log=True)
        try:
            self.data = build_dataset(cfg.DATASET.NAME, root=cfg.DATASET.ROOT or None, **_dataset_kwargs(cfg))
        except TypeError as err:  # an unknown DATASET.ARGS key
            raise ConfigError(f"DATASET.ARGS for {cfg.DATASET.NAME!r}: {err}; fix DATASET.ARGS") from None
        os.makedirs(self.output_dir, exist_ok=True)
        remove_stale_temporaries(self.output_dir)  # checkpoints or reports of a run killed mid-write
        # Before seeding: what the method prepares (e.g. loading M2m's g) must not shift this run's RNG.
        inputs = prepare_method(cfg, self.data, training=training, **given)
        self.train_set = self.data.train
        self.train_labels = np.asarray(self.data.train.targets, dtype=np.int64)
        self.train_counts = np.asarray(self.data.train_counts)
        if inputs.train_indices is not None:  # the method holds part of the training split out
            self.train_set = Subset(self.data.train, inputs.train_indices.tolist())
            self.train_labels = self.train_labels[inputs.train_indices]
            self.train_counts = np.bincount(self.train_labels, minlength=self.data.num_classes)
        seed_all_rng(cfg.SEED)
        try:
            self.model = build_model(
                cfg.MODEL.NAME, self.data.num_classes, **{k.lower(): v for k, v in cfg.MODEL.ARGS.items()}
            )
        except TypeError as err:
            raise ConfigError(f"MODEL.ARGS for {cfg.MODEL.NAME!r}: {err}; fix MODEL.ARGS") from None
        self.method: ClassificationMethod = build_method(cfg, self.model, self.train_counts, **inputs.extras)
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
        self.scheduler = LRMultiplier(
            self.optimizer,
            build_lr_multiplier(cfg, self.iters_per_epoch),
            max_iter=max(1, cfg.SOLVER.EPOCHS * self.iters_per_epoch),
        )
        self.checkpointer = AtomicCheckpointer(
            self.model, self.output_dir, method=self.method, optimizer=self.optimizer, scheduler=self.scheduler
        )
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

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint_path(self) -> str:
        return os.path.join(self.output_dir, CHECKPOINT)

    def final_eval_path(self) -> str:
        return os.path.join(self.output_dir, "eval", "final", "eval.json")

    def save_checkpoint(self) -> str:
        """OUTPUT_DIR/last.pth (atomic): model, method, optimizer, scheduler, RNG states and epoch position."""
        self.checkpointer.save(
            CHECKPOINT_NAME,
            epoch=self.epoch,
            iter_in_epoch=self.iter_in_epoch,
            global_step=self.global_step,
            rng=rng_states(),
            config=self.cfg.dump(),
        )
        return self.checkpoint_path()

    def load_checkpoint(self, path: str, weights_only: bool = False, fix: str = "") -> None:
        """Restore a checkpoint; `weights_only` loads just the model and method (evaluation).

        Files are read with `torch.load(weights_only=True)` whatever `weights_only` says: tensors and containers only.
        A missing file raises UserFileNotFoundError; one that is unreadable (truncated: an interrupted copy), not this
        trainer's or, for training, weights only raises CheckpointError naming it before any state changes, and one
        that does not fit the model or method raises CheckpointError too. `fix` replaces the messages' default advice.
        """
        if not self.checkpointer.path_manager.isfile(path):
            # a FileNotFoundError too, as before, for callers that catch that
            raise UserFileNotFoundError(
                f"checkpoint {path} does not exist. Fix: {fix or 'train first or pass --checkpoint PATH'}."
            )
        fix = fix or "pass --checkpoint with an intact checkpoint of this config, or train again"
        try:
            state = read_checkpoint_file(path, self.checkpointer.read)
        except CheckpointError as err:
            cause = err.__cause__
            if isinstance(cause, pickle.UnpicklingError) and "weights only load failed" in str(cause).lower():
                # a readable file holding objects the safe unpickler refuses: another program's, or this trainer's
                # from before RNG states were stored as tensors
                detail = re.search(r"WeightsUnpickler error: ([^\n]+)", str(cause))
                reason = (
                    f"holds objects torch.load(weights_only=True) refuses "
                    f"({detail.group(1).strip() if detail else 'UnpicklingError'}): it was "
                    "written by another program, or by this trainer before RNG states were stored as tensors"
                )
                raise CheckpointError(path, reason, fix) from cause
            raise CheckpointError(path, err.reason, fix) from cause
        if not isinstance(state, dict) or "model" not in state:
            got = f"keys {sorted(map(str, state))[:8]}" if isinstance(state, dict) else f"a {type(state).__name__}"
            raise CheckpointError(
                path, f"is not a checkpoint of this trainer (a dict with a 'model' entry; got {got})", fix
            )
        missing = [
            k for k in ("optimizer", "scheduler", "rng", "epoch", "iter_in_epoch", "global_step") if k not in state
        ]
        if missing and not weights_only:
            raise CheckpointError(
                path, f"holds weights only (no {', '.join(missing)}), so training cannot continue from it", fix
            )
        try:
            self.model.load_state_dict(state["model"])
            self.method.load_state_dict(state.get("method", {}))
        except RuntimeError as err:
            raise CheckpointError(
                path,
                f"does not fit MODEL.NAME={self.cfg.MODEL.NAME!r} with METHOD.NAME={self.cfg.METHOD.NAME!r} "
                f"({str(err).splitlines()[0]})",
                "evaluate or resume it with the config it was trained with",
            ) from None
        if weights_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.iter_in_epoch, self.global_step = state["epoch"], state["iter_in_epoch"], state["global_step"]
        set_rng_states(state["rng"])
        self._truncate_metrics(self.global_step)

    def resume_or_load(self, resume: bool = True) -> bool:
        """Resume from OUTPUT_DIR/last.pth when it exists and `resume`; returns whether it did."""
        if resume and os.path.isfile(self.checkpoint_path()):
            # The only resumable file of a run (model_final.pth holds weights only): nothing older to fall back to.
            self.load_checkpoint(
                self.checkpoint_path(),
                fix=f"delete it to start this run over in {self.output_dir}, or pass --overwrite to delete all of "
                "the run's outputs and start over (or put an intact copy of the file back to continue)",
            )
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
        if len(kept) == len(rows):
            return  # nothing to drop: the file stays as it is
        text = io.StringIO()
        csv.writer(text).writerows(kept)  # the layout log_scalars appends with
        write_text_atomic(path, text.getvalue())

    # -------------------------------------------------------------------------------------------- training
    def train(self, max_steps: int | None = None, resume: bool = True) -> dict | None:
        """Train to SOLVER.EPOCHS (or stop after `max_steps` global steps, checkpointing there).

        Returns the final evaluation, or None when stopped early by `max_steps`. Resuming a finished run (its
        last.pth at SOLVER.EPOCHS, its final weights and evaluation written) trains and writes nothing: it returns
        the stored final evaluation (eval/final/eval.json), so metrics.csv gets no second set of final rows.
        """
        cfg = self.cfg
        resumed = self.resume_or_load(resume)
        if not resumed and self.global_step == 0 and os.path.isfile(self._metrics_path()):
            os.remove(self._metrics_path())  # a fresh run in a used folder: do not append to the old run's rows
        finished = os.path.isfile(self.final_eval_path()) and os.path.isfile(
            os.path.join(self.output_dir, FINAL_WEIGHTS)
        )
        if resumed and self.epoch >= cfg.SOLVER.EPOCHS and finished:
            logger.info(
                "%s holds a finished run (epoch %d of %d): nothing to train; its final evaluation is %s",
                self.output_dir, self.epoch, cfg.SOLVER.EPOCHS, self.final_eval_path(),
            )  # fmt: skip
            self.close()
            with open(self.final_eval_path()) as f:
                return json.load(f)
        write_text_atomic(os.path.join(self.output_dir, "config.yaml"), cfg.dump())
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
        final = {"model": self.model.state_dict(), "method": self.method.state_dict(), "config": cfg.dump()}
        save_through(
            self.checkpointer.path_manager,
            os.path.join(self.output_dir, FINAL_WEIGHTS),
            lambda f: torch.save(weights_only_safe(final), f),
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

    def evaluate(self, tag: str = "final", log: bool = True) -> dict:
        """metrics.evaluate on the test split; OUTPUT_DIR/eval/<tag>/eval.json (+ PNGs with TEST.PLOTS); scalars logged
        to metrics.csv and TensorBoard unless `log` is False (an evaluation outside training: the run's rows stay
        its own).

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
            self.method.write_outputs(out_dir)
        else:
            plots.write_json_atomic(result, os.path.join(out_dir, "eval.json"))
        scalars = {
            f"test/{k}": float(v)
            for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step")
        }
        if log:
            self.log_scalars(scalars, self.global_step, self.epoch)
        return result

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
