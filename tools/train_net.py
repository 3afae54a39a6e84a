#!/usr/bin/env python
"""Train or evaluate an lt-detectron model (Detectron2-style entry point).

    python tools/train_net.py --config-file configs/demo/lt_shapes_baseline.yaml
    python tools/train_net.py --config-file configs/demo/lt_shapes_baseline.yaml --eval-only \
        MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --num-gpus 8 --config-file configs/lvis_baseline.yaml SOLVER.IMS_PER_BATCH 16
    python tools/train_net.py --num-gpus 2 --config-file configs/demo/lt_shapes_lda.yaml   # 2 CPU processes

--num-gpus N starts N processes: one per GPU with NCCL, or N CPU processes with gloo when MODEL.DEVICE is cpu
(docs/distributed.md). Everything but argument handling lives in lt_detectron.engine.

A user error (a config key or value, a missing or unreadable MODEL.WEIGHTS, a dataset problem, --resume into a run of
another config) ends in one line `error: <what, where, the fix>` on stderr and exit status 2; LT_DEBUG=1 or --debug
shows the traceback. --resume refuses a folder whose run has another head, method or dataset
(lt_detectron.engine.run_guard) unless --resume-any-config.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from typing import Any, Callable

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()  # first, before torch loads: pinned CPU kernels (docs/results.md), sleeping OpenMP threads

import detectron2.utils.comm as comm  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from torch.multiprocessing import ProcessExitedException  # noqa: E402

from lt_detectron.engine import AtomicDetectionCheckpointer, LTTrainer, prepare_launch, setup_cfg  # noqa: E402
from lt_detectron.engine.distributed import launch  # noqa: E402
from lt_detectron.engine.run_guard import (  # noqa: E402
    WEIGHTS_FIX,
    check_resume,
    check_weights_exist,
    checked_cfg,
    dataset_errors,
)
from lt_detectron.engine.run_logging import plain_when_redirected, setup_run_logging  # noqa: E402
from lt_detectron.utils.checkpoint import CheckpointError  # noqa: E402
from lt_detectron.utils.cli import (  # noqa: E402
    USER_ERROR_STATUS,
    UserError,
    UserFileNotFoundError,
    debug_requested,
    error_message,
    misplaced_options,
    report_user_error,
    run_cli,
)


def build_parser() -> argparse.ArgumentParser:
    """Detectron2's train_net arguments, with --resume-any-config and --debug."""
    parser = default_argument_parser()
    parser.add_argument(
        "--resume-any-config",
        action="store_true",
        help="with --resume: continue the run in OUTPUT_DIR even if it was made with another head, method or dataset",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error (as LT_DEBUG=1)")
    return parser


def _eval_weights(cfg) -> str:
    """The checkpoint --eval-only evaluates: MODEL.WEIGHTS, else OUTPUT_DIR's last checkpoint; fail clearly if none."""
    if cfg.MODEL.WEIGHTS:
        return cfg.MODEL.WEIGHTS
    tag = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            return os.path.join(cfg.OUTPUT_DIR, f.read().strip())
    raise UserFileNotFoundError(
        f"--eval-only needs trained weights: MODEL.WEIGHTS is empty and {tag} does not exist. "
        f"Fix: pass MODEL.WEIGHTS path/to/model_final.pth, or OUTPUT_DIR of a finished training run."
    )


def _load_weights(cfg, load: Callable[[], Any]) -> Any:
    """`load()`; a missing or unreadable file that is MODEL.WEIGHTS is named as such, with the fix."""
    try:
        return load()
    except CheckpointError as err:
        if not cfg.MODEL.WEIGHTS or os.path.abspath(err.path) != os.path.abspath(cfg.MODEL.WEIGHTS):
            raise
        raise UserError(f"MODEL.WEIGHTS {err.path} {err.reason}. Fix: {WEIGHTS_FIX}.") from err


def build_trainer(cfg, resume: bool) -> LTTrainer:
    """The trainer `main` runs: built, then resumed from OUTPUT_DIR's last checkpoint (or the newest intact one) or
    loaded from MODEL.WEIGHTS."""
    trainer = LTTrainer(cfg)
    _load_weights(cfg, lambda: trainer.resume_or_load(resume=resume))
    return trainer


def main(args):
    """What each process runs: config, the project's logging, then evaluation or training."""
    with plain_when_redirected():  # no escape codes in a redirected log
        cfg = setup_cfg(args)
    setup_run_logging(cfg.OUTPUT_DIR)
    if args.eval_only:
        model = LTTrainer.build_model(cfg)
        checkpointer = AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        _load_weights(cfg, lambda: checkpointer.resume_or_load(_eval_weights(cfg), resume=False))
        results = LTTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    return build_trainer(cfg, resume=args.resume).train()


def launched_main(args):
    """`main` in each launched process. In a worker of a multi-process run, a user error ends the process with status
    2 instead of a traceback the launcher would relay: its message goes to `args.user_error_file` (the first one
    written wins), which `invoke_main` prints once; without that file (another machine) the worker prints it. With
    one process, `invoke_main` reports it."""
    try:
        return main(args)
    except UserError as err:
        if comm.get_world_size() == 1 or getattr(args, "debug", False) or debug_requested():
            raise
        try:
            with open(getattr(args, "user_error_file", ""), "x") as f:
                f.write(error_message(err))
        except FileExistsError:
            pass  # another process's message is already there (ranks usually fail alike)
        except OSError:
            report_user_error(err)
        sys.exit(USER_ERROR_STATUS)


def _launch(args: argparse.Namespace, device: str) -> None:
    """`launch` of `launched_main`; a launched process's user error is raised here as a UserError."""
    folder = tempfile.mkdtemp(prefix="lt_train_net_errors.")
    args.user_error_file = os.path.join(folder, "user_error.txt")
    try:
        # The model's device picks the backend: gloo processes for a CPU model, Detectron2's NCCL launch for GPUs.
        launch(
            launched_main,
            args.num_gpus,
            device=device,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except ProcessExitedException as err:
        if err.exit_code != USER_ERROR_STATUS:
            raise
        if not os.path.isfile(args.user_error_file):
            raise UserError(f"process {err.error_index} stopped on a user error (its message is above)") from None
        with open(args.user_error_file) as f:
            raise UserError(f.read()) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    misplaced = misplaced_options(args.opts, list(parser._option_string_actions))
    if misplaced:
        head = argv[: len(argv) - len(args.opts)]
        fixed = head + misplaced + [o for o in args.opts if o not in misplaced]
        raise UserError(
            f"{' '.join(misplaced)} came after the KEY VALUE config overrides, where it is read as a config key; "
            f"nothing was run. Fix: put options before the overrides: tools/train_net.py {shlex.join(fixed)}"
        )
    setup_run_logging()  # the console, until OUTPUT_DIR is known: dataset generation and checks are shown
    print("Command Line Args:", args, flush=True)  # stdout, as Detectron2's: stderr starts with an error
    cfg = checked_cfg(args.config_file, args.opts)
    if not args.eval_only:
        check_resume(cfg, args.resume, args.resume_any_config)  # before anything is written into OUTPUT_DIR
    check_weights_exist(cfg, resume=args.resume and not args.eval_only)  # before the dataset work and the model
    # Datasets checked and class statistics computed once here, not in every launched process.
    with dataset_errors():
        args.class_stats_file = prepare_launch(args, cfg)
    _launch(args, cfg.MODEL.DEVICE)
    return 0


def invoke_main(argv: list[str] | None = None) -> int:
    """The command line: returns the exit status (0, or 2 after a user error reported as `error: ...`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_cli(lambda: _run(parser, args, argv), debug=args.debug)


if __name__ == "__main__":
    sys.exit(invoke_main())
