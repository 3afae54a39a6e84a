"""Issue 22, the detection tools' cases replayed with their exact inputs: exit status, the first line of the message,
and no user file changed (sha256 before and after).

tools/train_net.py: DATASETS.TRAIN given as a string, an unknown key, --resume after the overrides, a missing,
truncated or garbage MODEL.WEIGHTS, --resume into a run of another head (refused; --resume-any-config continues),
an unreadable last checkpoint beside an intact one (resumes from that one, warning), a user error in a launched
worker process; the project's log lines (the fast evaluator's table and file paths) on the console and in log.txt,
without escape codes when redirected. tools/demo.py --max-iter 0, tools/pretrain_backbone.py --iters 0. Stale
lt_shapes work folders of a killed generation.

The tools run in this process (`invoke_main` / `main`, what the command line calls); one subprocess checks the exit
status and LT_DEBUG=1 from a real command line.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
from _scripts import REPO, load_script
from test_user_errors import _hashes

from lt_detectron.data import generate_lt_shapes, register_lt_shapes
from lt_detectron.data.lt_shapes import remove_stale_work_folders
from lt_detectron.engine import build_cfg
from lt_detectron.engine.run_guard import check_resume
from lt_detectron.utils.cli import config_error
from lt_detectron.utils.io import host_name

BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
TINY = [
    "SOLVER.IMS_PER_BATCH", "2",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "DATALOADER.NUM_WORKERS", "0",
    "TEST.LT_EVAL_WORKERS", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def train_net():
    return load_script("tools/train_net.py", "lt_tools_train_net_user_errors")


@pytest.fixture(autouse=True)
def _loggers_restored():
    """The tools set up the `lt_detectron` logger, and Detectron2's default_setup adds console handlers bound to this
    test's captured stdout (closed after it) for each new OUTPUT_DIR: later tests get the loggers back as they were."""
    loggers = [logging.getLogger(name) for name in ("lt_detectron", "detectron2", "fvcore")]
    saved = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_shapes_errors") / "lt_shapes"
    generate_lt_shapes(str(root), seed=4, num_train_images=24, num_val_images=8)
    yield str(root)
    register_lt_shapes()


def _args(root: str, out, *extra: str) -> list:
    return ["--config-file", BASELINE, *TINY, "DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", str(out), *extra]


def _call(capsys, fn, argv) -> tuple:
    rc = fn(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _error_line(err: str) -> str:
    """The message's first line (torch may print its CUDA notice on stderr before it); no traceback above it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(train_net, tiny_root, tmp_path_factory):
    """2 iterations, a checkpoint after each, evaluated on the val split: model_0000000/1.pth and model_final.pth."""
    out = tmp_path_factory.mktemp("det") / "run"
    argv = _args(tiny_root, out, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1")
    assert train_net.invoke_main(argv) == 0 and (out / "model_final.pth").is_file()
    return out


# ----------------------------------------------------------------------------------- config and command line


def test_datasets_train_given_as_a_string(train_net, tiny_root, tmp_path, capsys):
    rc, _, err = _call(
        capsys, train_net.invoke_main, _args(tiny_root, tmp_path / "run", "DATASETS.TRAIN", "lt_shapes_train")
    )
    assert rc == 2
    assert _error_line(err) == (
        "error: command-line override: DATASETS.TRAIN must be a tuple (like ('lt_shapes_train',)); got the string "
        "'lt_shapes_train'. Fix: write a tuple, with a trailing comma for one item: DATASETS.TRAIN "
        "\"('lt_shapes_train',)\" on the command line, or TRAIN: (\"lt_shapes_train\",) in the YAML file."
    )
    assert not (tmp_path / "run").exists()


def test_unregistered_dataset_name(train_net, tiny_root, tmp_path, capsys):
    """Item 6: a name nobody registered gets the command-line registration as the fix, before any run folder."""
    rc, _, err = _call(
        capsys, train_net.invoke_main, _args(tiny_root, tmp_path / "run", "DATASETS.TRAIN", "('lt_shapes_trian',)")
    )
    assert rc == 2
    line = _error_line(err)
    assert line.startswith(
        "error: DATASETS.TRAIN names 'lt_shapes_trian', which is not a registered dataset (did you mean "
        "'lt_shapes_train'"
    ), line
    assert "DATASETS.LT_JSON_DATASETS" in line
    assert not (tmp_path / "run").exists()


def test_a_string_of_several_names_gets_a_tuple_of_them_as_the_fix():
    err = ValueError(
        "Type mismatch (<class 'tuple'> vs. <class 'str'>) with values (('lt_shapes_train',) vs. a,b) for config "
        "key: DATASETS.TRAIN"
    )
    assert str(config_error(err, "c.yaml")).endswith(
        """Fix: write a tuple, with a trailing comma for one item: DATASETS.TRAIN "('a', 'b')" on the command line, """
        """or TRAIN: ("a", "b") in the YAML file."""
    )


def test_unknown_key_reaches_the_one_line_error(train_net, tiny_root, tmp_path, capsys):
    rc, _, err = _call(
        capsys, train_net.invoke_main, _args(tiny_root, tmp_path / "run", "MODEL.ROI_HEADS.NUM_CLASSE", "3")
    )
    assert rc == 2
    assert _error_line(err).startswith(
        "error: command-line override: unknown config key 'MODEL.ROI_HEADS.NUM_CLASSE'. Did you mean "
        "MODEL.ROI_HEADS.NUM_CLASSES,"
    )
    assert not (tmp_path / "run").exists()


def test_resume_after_the_overrides(train_net, tiny_root, tmp_path, capsys):
    argv = _args(tiny_root, tmp_path / "run", "SOLVER.MAX_ITER", "2", "--resume")
    rc, _, err = _call(capsys, train_net.invoke_main, argv)
    fixed = " ".join(["--config-file", BASELINE, "--resume", *argv[2:-1]])
    assert rc == 2
    assert _error_line(err) == (
        "error: --resume came after the KEY VALUE config overrides, where it is read as a config key; nothing was "
        f"run. Fix: put options before the overrides: tools/train_net.py {fixed}"
    )
    assert not (tmp_path / "run").exists()


def test_missing_weights(train_net, tiny_root, tmp_path, capsys):
    missing = str(tmp_path / "model_final.pth")
    rc, _, err = _call(capsys, train_net.invoke_main, _args(tiny_root, tmp_path / "run", "MODEL.WEIGHTS", missing))
    assert rc == 2
    assert _error_line(err).startswith(f"error: MODEL.WEIGHTS {missing} does not exist (relative paths are read from ")
    assert 'MODEL.WEIGHTS ""' in err and not (tmp_path / "run").exists()  # failed before any dataset or model work


def test_eval_only_without_weights(train_net, tiny_root, tmp_path, capsys):
    rc, _, err = _call(capsys, train_net.invoke_main, ["--eval-only", *_args(tiny_root, tmp_path / "run")])
    assert rc == 2
    assert _error_line(err) == (
        f"error: --eval-only needs trained weights: MODEL.WEIGHTS is empty and {tmp_path / 'run' / 'last_checkpoint'} "
        "does not exist. Fix: pass MODEL.WEIGHTS path/to/model_final.pth, or OUTPUT_DIR of a finished training run."
    )


# ------------------------------------------------------------------------------------------ checkpoint files


@pytest.mark.parametrize(
    "kind,content,reason",
    [
        ("truncated", None, "(RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central"),
        # torch 2.3 unpickles it and fails on the value; torch >= 2.6 (weights_only by default) refuses to unpickle
        ("garbage", b"I12x\n.", ("(ValueError: ", "(UnpicklingError: ")),
    ],
)
def test_unreadable_weights(train_net, finished_run, tiny_root, tmp_path, capsys, kind, content, reason):
    weights = tmp_path / f"{kind}.pth"
    weights.write_bytes(content if content is not None else (finished_run / "model_final.pth").read_bytes()[:1000])
    before = _hashes(tmp_path)
    argv = _args(tiny_root, tmp_path / "run", "SOLVER.MAX_ITER", "1", "MODEL.WEIGHTS", str(weights))
    rc, _, err = _call(capsys, train_net.invoke_main, argv)
    assert rc == 2
    line = _error_line(err)
    reasons = (reason,) if isinstance(reason, str) else reason
    assert line.startswith(tuple(f"error: MODEL.WEIGHTS {weights} cannot be read {r}" for r in reasons)), line
    assert "truncated" in line and line.endswith('or pass MODEL.WEIGHTS "" to start from random weights.')
    after = _hashes(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("run")} == before
    assert not any(name.endswith(".pth") for name in os.listdir(tmp_path / "run"))  # no checkpoint was written


def test_resume_falls_back_from_an_unreadable_last_checkpoint(train_net, finished_run, tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    final = out / "model_final.pth"
    final.write_bytes(final.read_bytes()[:1000])  # what last_checkpoint names, cut short
    bad = _hashes(out)["model_final.pth"]
    argv = ["--resume", *_args(tiny_root, out, "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1")]
    argv += ["DATASETS.TEST", "()"]
    rc, _, err = _call(capsys, train_net.invoke_main, argv)
    assert rc == 0, err
    log = (out / "log.txt").read_text()
    fell_back = [line for line in log.splitlines() if "RESUME FELL BACK" in line]
    assert len(fell_back) == 1
    assert f"last_checkpoint names {final}, which cannot be read" in fell_back[0]
    assert f"resumed from {out / 'model_0000001.pth'}, the newest intact checkpoint" in fell_back[0]
    assert "Starting training from iteration 2" in log
    assert (out / "last_checkpoint").read_text() == "model_final.pth" and _hashes(out)["model_final.pth"] != bad


# ------------------------------------------------------------------------------------ resume into another run


def test_resume_into_a_run_of_another_head_is_refused(train_net, finished_run, tiny_root, capsys):
    before = _hashes(finished_run)
    argv = ["--resume", *_args(tiny_root, finished_run, "SOLVER.MAX_ITER", "3")]
    argv += ["MODEL.ROI_HEADS.NAME", "LTROIHeads", "MODEL.LT.BOX_CLASSIFIER", "lade"]
    rc, _, err = _call(capsys, train_net.invoke_main, argv)
    assert rc == 2
    assert _error_line(err) == (
        f"error: --resume: OUTPUT_DIR {finished_run} holds a run made with another config (MODEL.LT.BOX_CLASSIFIER "
        "softmax -> lade, MODEL.ROI_HEADS.NAME StandardROIHeads -> LTROIHeads); its checkpoint would be continued as "
        "another model. Nothing was written."
    )
    assert "--resume-any-config" in err and "another OUTPUT_DIR" in err
    assert _hashes(finished_run) == before


def test_resume_any_config_continues_with_a_warning(finished_run, tiny_root, caplog):
    cfg = build_cfg(BASELINE, ["DATASETS.LT_SHAPES_DIR", tiny_root, "OUTPUT_DIR", str(finished_run)])
    cfg.DATASETS.TRAIN = ("lt_shapes_val",)
    with caplog.at_level(logging.WARNING):
        check_resume(cfg, resume=True, allow_any_config=True)
    assert any("DATASETS.TRAIN (lt_shapes_train,) -> (lt_shapes_val,)" in r.getMessage() for r in caplog.records)
    check_resume(cfg, resume=False)  # no --resume: nothing to compare
    cfg.DATASETS.TRAIN = ("lt_shapes_train",)
    check_resume(cfg, resume=True)  # the same head and data: resumed


# ------------------------------------------------------------------------------------------------ logging


def test_project_log_lines_shown_and_plain_when_redirected(finished_run):
    """The run of `finished_run` evaluated lt_shapes_val: the fast evaluator's table and file paths are in log.txt
    (and went to the console, which pytest redirects: no escape codes anywhere)."""
    log = (finished_run / "log.txt").read_text()
    assert "\x1b[" not in log
    assert re.search(r"lt_detectron\.evaluation\.\S+ INFO: LVIS results:", log)
    csv = finished_run / "inference" / "lt_shapes_val" / "lvis_per_class.csv"
    assert f"Per-class AP: {csv}" in log and csv.is_file()


def test_console_output_has_no_escape_codes(train_net, tiny_root, tmp_path, capsys):
    rc, out, err = _call(
        capsys, train_net.invoke_main, _args(tiny_root, tmp_path / "run", "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()")
    )
    assert rc == 0, err
    assert "lt_detectron.engine.resume INFO: repeat factor sampling" in out  # the project's own lines on stdout
    assert "\x1b[" not in out + err


# ------------------------------------------------------------------------------------------ worker processes


def test_user_error_in_a_launched_worker(train_net, tmp_path, monkeypatch, capsys):
    """In a process of a multi-process run, a user error ends the process with status 2 and its message goes to the
    launcher, which says it once, in one line, and exits with 2 (no relayed traceback)."""
    from torch.multiprocessing import ProcessExitedException

    monkeypatch.delenv("LT_DEBUG", raising=False)

    def failing_main(args):
        raise train_net.CheckpointError("/w/model.pth", "cannot be read (RuntimeError: x)")

    monkeypatch.setattr(train_net, "main", failing_main)
    monkeypatch.setattr(train_net.comm, "get_world_size", lambda: 2)
    args = train_net.build_parser().parse_args([])
    args.user_error_file = str(tmp_path / "user_error.txt")
    for _ in range(2):  # the second rank finds the first one's message and leaves it
        with pytest.raises(SystemExit) as info:
            train_net.launched_main(args)
        assert info.value.code == 2
    message = "checkpoint /w/model.pth cannot be read (RuntimeError: x). Fix: " + train_net.CheckpointError("", "").fix
    assert (tmp_path / "user_error.txt").read_text() == message + "."
    assert capsys.readouterr().err == ""

    def launch(main_func, num_processes, args=(), **kwargs):  # two workers, both failing as above
        for _ in range(num_processes):
            with pytest.raises(SystemExit):
                main_func(*args)
        raise ProcessExitedException("process 0 terminated with exit code 2", 0, 123, 2)

    monkeypatch.setattr(train_net, "launch", launch)
    monkeypatch.setattr(train_net, "prepare_launch", lambda args, cfg: "")
    rc, _, err = _call(capsys, train_net.invoke_main, ["--config-file", BASELINE, "--num-gpus", "2"])
    assert rc == 2 and err == f"error: {message}.\n"


def test_command_line_exit_status_and_debug(tiny_root, tmp_path):
    argv = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), *_args(tiny_root, tmp_path / "run")]
    argv += ["DATASETS.TRAIN", "lt_shapes_train"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    plain = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and _error_line(plain.stderr).startswith(
        "error: command-line override: DATASETS.TRAIN"
    )
    debug = subprocess.run(argv, cwd=REPO, env=dict(env, LT_DEBUG="1"), capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UserError" in debug.stderr


# ---------------------------------------------------------------------------------- demo.py, pretrain_backbone.py


def test_demo_max_iter_zero(tmp_path, capsys):
    demo = load_script("tools/demo.py", "lt_tools_demo_user_errors")
    rc, out, err = _call(capsys, demo.main, ["--max-iter", "0", "--output", str(tmp_path / "demo")])
    assert rc == 2 and out == ""
    assert _error_line(err) == (
        "error: --max-iter 0: the demo trains at least one iteration; nothing was run. Fix: --max-iter 20 for a "
        "smoke run, or leave it out for the config's SOLVER.MAX_ITER."
    )
    assert not (tmp_path / "demo").exists()


def test_pretrain_backbone_iters_zero(tmp_path, capsys):
    tool = load_script("tools/pretrain_backbone.py", "lt_tools_pretrain_user_errors")
    rc, _, err = _call(capsys, tool.main, ["--iters", "0", "--out", str(tmp_path / "pt.pth")])
    assert rc == 2 and _error_line(err) == "error: --iters 0: must be at least 1; nothing was run. Fix: --iters 1+."
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------- lt_shapes work folders


def test_stale_lt_shapes_work_folders_removed_only_when_their_writer_is_gone(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    host = host_name()
    names = {
        f".lt_shapes.tmp-{host}.{gone.pid}.k1ll3d": False,  # a killed generation: removed
        f".lt_shapes.old-{host}.{gone.pid}": False,  # a killed swap's previous dataset: removed
        f".lt_shapes.tmp-{host}.{os.getpid()}.live": True,  # a generation running now: kept
        f".lt_shapes.tmp-otherhost.{gone.pid}.nfs": True,  # another machine's (shared file system): kept
        ".lt_shapes.tmp-abc123": True,  # the older naming, writer unknown: kept
        f".other.tmp-{host}.{gone.pid}.x": True,  # another dataset folder's: kept
    }
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "lt_shapes_train.json").write_text("{}")
    generate_lt_shapes(tmp_path / "lt_shapes", seed=4, num_train_images=24, num_val_images=8)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {name for name, kept in names.items() if kept} | {"lt_shapes"}
    assert remove_stale_work_folders(tmp_path / "lt_shapes") == []
