"""Issue 22, items 3 and 4 replayed with their exact inputs: exit status, the first line of the message, and no user
file changed (sha256 of every file before and after).

Item 3, the classification CLI: a used OUTPUT_DIR is resumed only with the same config (said in one line) or with
--resume, another run's outputs are refused naming the folder, the differing keys and the fix; count and size keys
are checked; re-running a finished run writes nothing (no duplicate final rows in metrics.csv); --eval-only keeps
working and leaves the training's files alone.
Item 5, the classification CLI's unclear errors: CIFAR files that fail the md5 check or are not CIFAR pickles (named,
with the official md5 and the archive layout, no download suggested), `DEVICE cuda` on a machine without CUDA (the
shipped CIFAR configs say `DEVICE: auto`), and a truncated last.pth (named, with the fix; not blamed on RNG storage).
Item 4, tools/evaluate_lvis.py: numeric flags, non-record entries, scores that are not JSON numbers, missing files,
an --output that is a file, a bad --train-gt, --lvis-api's input checks, and the training run's reports kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from _cls_train_helpers import TINY
from _scripts import REPO, load_script

from lt_detectron.classification import train as cls_cli
from lt_detectron.evaluation.synthetic import make_lvis_gt, make_lvis_results

CONFIGS = os.path.join(REPO, "configs", "classification")


def _hashes(root) -> dict:
    """sha256 of every file under `root`, by relative path."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _first_line(text: str) -> str:
    """The first non-empty line as a terminal shows it: what follows the last carriage return (progress bars)."""
    lines = [line.split("\r")[-1].strip() for line in text.split("\n")]
    return next((line for line in lines if line), "")


# ------------------------------------------------------------------------------------------- item 3: classification


def _cls_args(out, method: str, *overrides: str) -> list:
    """digits_lt_<method>.yaml with the tiny recipe of the classification tests, into `out`."""
    config = os.path.join(CONFIGS, f"digits_lt_{method}.yaml")
    return ["--config", config, *TINY, "OUTPUT_DIR", str(out), *overrides]


def _cls(capsys, *argv):
    rc = cls_cli.cli(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _metric_rows(out) -> list:
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        return list(csv.reader(f))[1:]


@pytest.fixture(scope="module")
def lade_run(tmp_path_factory):
    """A finished run: digits-LT, LADE, SOLVER.EPOCHS 2 (the issue's run had 40)."""
    out = tmp_path_factory.mktemp("cls") / "lade"
    assert cls_cli.cli(_cls_args(out, "lade")) == 0
    return out


def test_other_config_in_a_used_folder_is_refused(lade_run, capsys):
    """The issue: `METHOD.NAME ce SOLVER.EPOCHS 60` in the LADE run's folder continued it as CE and rewrote
    config.yaml / eval.json as "ce"."""
    before = _hashes(lade_run)
    rc, out, err = _cls(capsys, *_cls_args(lade_run, "lade", "METHOD.NAME", "ce", "SOLVER.EPOCHS", "3"))
    assert rc == 2 and out == ""
    assert _first_line(err) == (
        f"error: OUTPUT_DIR {lade_run} already holds another run (last.pth, model_final.pth, config.yaml, "
        "metrics.csv, eval/); nothing was written."
    )
    assert "METHOD.NAME lade -> ce, SOLVER.EPOCHS 2 -> 3" in err
    assert "another OUTPUT_DIR" in err and "--resume" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) <= 4 and "Traceback" not in err  # one screen
    assert _hashes(lade_run) == before


def test_finished_run_rerun_writes_nothing(lade_run, capsys, caplog):
    """The issue: re-running a finished run appended duplicate final rows to metrics.csv."""
    before = _hashes(lade_run)
    rows = _metric_rows(lade_run)
    with caplog.at_level(logging.INFO):
        rc, out, err = _cls(capsys, *_cls_args(lade_run, "lade"))
    assert rc == 0 and "error" not in err
    same = [r.getMessage() for r in caplog.records if "holds a run with the same config" in r.getMessage()]
    assert same == [f"OUTPUT_DIR {lade_run} holds a run with the same config: resuming it from last.pth"]
    final = json.load(open(lade_run / "eval" / "final" / "eval.json"))
    assert json.loads(out.strip().splitlines()[-1])["top1"] == final["top1"]
    assert _metric_rows(lade_run) == rows
    assert _hashes(lade_run) == before


def test_eval_only_keeps_working_and_leaves_the_run_alone(lade_run, capsys):
    before = _hashes(lade_run)
    rc, out, _ = _cls(capsys, *_cls_args(lade_run, "lade"), "--eval-only")
    assert rc == 0 and json.loads(out.strip().splitlines()[-1])["method"] == "lade"
    again = json.load(open(lade_run / "eval" / "eval_only" / "eval.json"))
    assert again["top1"] == json.load(open(lade_run / "eval" / "final" / "eval.json"))["top1"]
    after = _hashes(lade_run)
    assert {k: v for k, v in after.items() if not k.startswith(os.path.join("eval", "eval_only"))} == before

    # --tag final would replace the training's final evaluation: refused
    rc, _, err = _cls(capsys, *_cls_args(lade_run, "lade"), "--eval-only", "--tag", "final")
    assert rc == 2
    assert _first_line(err) == (
        f"error: --eval-only --tag final: {lade_run / 'eval' / 'final'} holds the training run's evaluation; "
        "nothing was written. Fix: pass another --tag (the default is eval_only)."
    )
    assert _hashes(lade_run) == after


def test_resume_continues_another_config_when_asked(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert cls_cli.cli(_cls_args(out, "ce", "SOLVER.EPOCHS", "1")) == 0
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        rc, _, _ = _cls(capsys, *_cls_args(out, "ce", "SOLVER.EPOCHS", "2"), "--resume")
    assert rc == 0
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("--resume")] == [
        f"--resume: continuing the run in {out} with changed keys: SOLVER.EPOCHS 1 -> 2"
    ]
    epochs = [int(r[0]) for r in _metric_rows(out) if r[2] == "train/loss"]
    assert epochs == [1, 2]  # epoch 1 trained once, then continued
    assert json.load(open(out / "eval" / "final" / "eval.json"))["epoch"] == 2


def test_overwrite_starts_over(tmp_path, capsys):
    out = tmp_path / "run"
    assert cls_cli.cli(_cls_args(out, "lade", "SOLVER.EPOCHS", "1")) == 0
    capsys.readouterr()
    rc, _, _ = _cls(capsys, *_cls_args(out, "ce", "SOLVER.EPOCHS", "1"), "--overwrite")
    assert rc == 0
    assert json.load(open(out / "eval" / "final" / "eval.json"))["method"] == "ce"
    assert "NAME: ce" in (out / "config.yaml").read_text()


def test_folder_with_outputs_but_no_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "eval" / "final").mkdir(parents=True)
    (out / "eval" / "final" / "eval.json").write_text('{"top1": 50.0}')
    (out / "last.pth").write_bytes(b"someone else's checkpoint")
    before = _hashes(out)
    rc, _, err = _cls(capsys, *_cls_args(out, "ce"))
    assert rc == 2
    assert _first_line(err) == (
        f"error: OUTPUT_DIR {out} already holds another run (last.pth, eval/); nothing was written."
    )
    assert "no readable config.yaml" in err
    assert _hashes(out) == before


def test_m2m_classifier_g_of_another_config_is_refused(tmp_path, capsys):
    """M2m reuses OUTPUT_DIR/m2m_g only when g's config matches (a rerun of the whole M2m run writes nothing)."""
    out = tmp_path / "m2m"
    m2m = ["SOLVER.EPOCHS", "1", "METHOD.M2M.START_EPOCH", "0"]
    assert cls_cli.cli(_cls_args(out, "m2m", *m2m)) == 0
    before = _hashes(out)
    assert cls_cli.cli(_cls_args(out, "m2m", *m2m)) == 0
    assert _hashes(out) == before

    other = tmp_path / "other"  # a g trained with 1 epoch sits where a 2-epoch M2m run would put its g
    assert cls_cli.cli(_cls_args(other / "m2m_g", "ce", "SOLVER.EPOCHS", "1")) == 0
    capsys.readouterr()
    before = _hashes(other)
    rc, _, err = _cls(capsys, *_cls_args(other, "m2m", "SOLVER.EPOCHS", "2", "METHOD.M2M.START_EPOCH", "0"))
    assert rc == 2
    assert _first_line(err) == (
        f"error: M2m's classifier g folder {other / 'm2m_g'} already holds another run (last.pth, model_final.pth, "
        "config.yaml, metrics.csv, eval/); nothing was written."
    )
    assert "SOLVER.EPOCHS 1 -> 2" in err and "TEST.EVAL_PERIOD" not in err and "METHOD.M2M.G_CHECKPOINT" in err
    assert _hashes(other) == before


@pytest.mark.parametrize(
    "key,value,least",
    [
        ("SOLVER.EPOCHS", "-3", 1),  # the issue: evaluated an untrained model with exit 0
        ("SOLVER.EPOCHS", "0", 1),
        ("SOLVER.BATCH_SIZE", "0", 1),
        ("TEST.BATCH_SIZE", "-1", 1),
        ("DATALOADER.NUM_WORKERS", "-1", 0),
        ("TEST.ECE_BINS", "0", 1),
        ("CHECKPOINT_PERIOD", "-1", 0),
        ("METHOD.META.DEV_PER_CLASS", "0", 1),
    ],
)
def test_count_and_size_keys_are_checked(tmp_path, capsys, key, value, least):
    out = tmp_path / "run"
    rc, _, err = _cls(capsys, *_cls_args(out, "ce", key, value))
    assert rc == 2
    assert _first_line(err).startswith(f"error: {key}={int(value)}: must be a number >= {least} (")
    assert not out.exists()  # checked before anything is written


def test_command_line_exit_status(tmp_path):
    """The real entry point (`python -m ...`): exit status 2 and the message, no traceback."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lt_detectron.classification.train", *_cls_args(out, "ce", "SOLVER.EPOCHS", "-3")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert _first_line(proc.stderr).startswith("error: SOLVER.EPOCHS=-3: must be a number >= 1")
    assert "Traceback" not in proc.stderr and not out.exists()


# ----------------------------------------------------------------------------- item 5: classification, unclear errors

CIFAR10_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f"}  # torchvision's record of the official archive


def _write_cifar(root, num_classes: int) -> str:
    """Tiny files in the CIFAR python format (2 training, 1 test image per class) under `root`; returns the folder."""
    rng = np.random.default_rng(0)
    labels_key = "labels" if num_classes == 10 else "fine_labels"
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    else:
        folder = root / "cifar-100-python"
        batches = ["train", "test"]
        meta = ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    folder.mkdir(parents=True)
    for name in batches:
        labels = list(range(num_classes)) * (1 if "test" in name else 2)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"data": data, labels_key: labels}))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1]))
    return str(folder)


def _cifar_args(config: str, root, out, *overrides: str) -> list:
    """A shipped CIFAR config as the README runs it (DATASET.ROOT /data), with DATASET.ROOT and OUTPUT_DIR in tmp."""
    return ["--config", os.path.join(CONFIGS, config), "DATASET.ROOT", str(root), "OUTPUT_DIR", str(out), *overrides]


def test_cifar_file_that_fails_the_md5_check(tmp_path, capsys):
    """The issue: torchvision's "Dataset not found or corrupted. You can use download=True", no file named."""
    folder = _write_cifar(tmp_path / "data", 10)
    before = _hashes(tmp_path)
    got = hashlib.md5(open(os.path.join(folder, "data_batch_1"), "rb").read()).hexdigest()
    rc, out, err = _cls(capsys, *_cifar_args("cifar10_lt_meta.yaml", tmp_path / "data", tmp_path / "out"))
    assert rc == 2 and out == ""
    assert _first_line(err) == (
        f"error: cifar10_lt: {folder}/data_batch_1 fails the md5 check: md5 {got}, expected "
        f"{CIFAR10_MD5['data_batch_1']} (the file in the official cifar-10-python.tar.gz)."
    )
    source = "https://www.cs.toronto.edu/~kriz/cifar.html"
    assert f"Fix: extract the official cifar-10-python.tar.gz ({source}) into {tmp_path / 'data'}" in err
    assert (
        f"{folder}/{{data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta}}"
        in err
    )
    assert "Also failing: test_batch (md5 " in err and "DATASET.ARGS.VERIFY_MD5 False" in err
    assert "download=True" not in err and "Traceback" not in err
    assert _hashes(tmp_path) == before  # OUTPUT_DIR not even created


def _truncate(path) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


CORRUPT_PICKLES = [
    # (name, file, how it is spoiled, the problem the first line names)
    ("garbage", "train", lambda p: open(p, "wb").write(b"not a pickle\n"),
     "UnpicklingError: invalid load key, 'n'.; 13 bytes"),
    ("truncated", "test", _truncate, "UnpicklingError: pickle data was truncated"),
    ("other pickle", "meta", lambda p: open(p, "wb").write(pickle.dumps({"label_names": ["a", "b"]})),
     "it has no 'fine_label_names' entry (keys: ['label_names'])"),
    ("empty batch", "train", lambda p: open(p, "wb").write(pickle.dumps({"data": [], "fine_labels": []})),
     "its 'data' (0 values) is not one 3072-value row per label (0 labels)"),
]  # fmt: skip


@pytest.mark.parametrize("name,file,spoil,problem", CORRUPT_PICKLES, ids=[c[0] for c in CORRUPT_PICKLES])
def test_cifar_file_that_is_not_a_cifar_pickle(tmp_path, capsys, name, file, spoil, problem):
    """The issue: raw pickle errors with the file never named. The md5 check is off (re-pickled copies), so the file
    is read and found not to be a CIFAR-100 pickle."""
    folder = _write_cifar(tmp_path / "data", 100)
    spoil(os.path.join(folder, file))
    before = _hashes(tmp_path)
    args = _cifar_args("cifar100_lt_lade.yaml", tmp_path / "data", tmp_path / "out", "DATASET.ARGS.VERIFY_MD5", "False")
    rc, out, err = _cls(capsys, *args)
    assert rc == 2 and out == ""
    first = _first_line(err)
    assert first.startswith(f"error: cifar100_lt: {folder}/{file} is not a CIFAR-100 python pickle ({problem}"), err
    assert "Fix: extract the official cifar-100-python.tar.gz" in err and f"{folder}/{{train, test, meta}}" in err
    assert "download" not in err.replace("Nothing is downloaded", "") and "Traceback" not in err
    assert _hashes(tmp_path) == before


def test_cifar_folder_missing(tmp_path, capsys, caplog):
    """The shipped config on this machine with no data: `DEVICE: auto` picks a device in one line, then the missing
    folder is named with the archive to extract."""
    (tmp_path / "data").mkdir()
    with caplog.at_level(logging.INFO):
        rc, _, err = _cls(capsys, *_cifar_args("cifar100_lt_lade.yaml", tmp_path / "data", tmp_path / "out"))
    assert rc == 2
    assert _first_line(err) == f"error: cifar100_lt: folder {tmp_path / 'data' / 'cifar-100-python'} does not exist."
    assert "tar -xzf cifar-100-python.tar.gz" in err
    device = "cuda" if torch.cuda.is_available() else "cpu"
    auto = [r.getMessage() for r in caplog.records if r.getMessage().startswith("DEVICE auto")]
    assert len(auto) == 1 and auto[0].endswith(f"found, using {device}")
    assert os.listdir(tmp_path) == ["data"]


def test_shipped_cifar_configs_pick_the_device():
    from lt_detectron.classification.config import load_config

    for name in ("cifar_lt_base.yaml", "cifar10_lt_meta.yaml", "cifar100_lt_lade.yaml", "imagenet_lt_lade.yaml"):
        assert load_config(os.path.join(CONFIGS, name)).DEVICE == "auto", name


@pytest.mark.parametrize(
    "value,first",
    [
        ("cuda", "error: DEVICE='cuda': this machine has no CUDA device (torch.cuda.is_available() is False). Fix: "
         "set DEVICE cpu, or DEVICE auto (cuda when available, else cpu), in the config file or as an override"),
        ("cuda:1", "error: DEVICE='cuda:1': this machine has no CUDA device"),
        ("gpu", "error: DEVICE='gpu' is not a device torch knows (Expected one of cpu, cuda,"),
    ],
)  # fmt: skip
def test_device_this_machine_lacks(tmp_path, capsys, monkeypatch, value, first):
    """The issue: `DEVICE: cuda` of the CIFAR configs on a CPU machine ended in a traceback. CUDA is hidden, so the
    case replays on a GPU machine too; checked before the data is read (there is none here) or anything written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, out, err = _cls(
        capsys, *_cifar_args("cifar100_lt_lade.yaml", tmp_path / "data", tmp_path / "out", "DEVICE", value)
    )
    assert rc == 2 and out == ""
    assert _first_line(err).startswith(first), err
    assert len(err.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


@pytest.fixture
def finished_ce_run(tmp_path):
    out = tmp_path / "ce"
    assert cls_cli.cli(_cls_args(out, "ce", "SOLVER.EPOCHS", "1")) == 0
    return out


def test_truncated_last_checkpoint(finished_ce_run, capsys):
    """The issue: last.pth cut short was blamed on RNG-state storage. Re-running the same command (a same-config
    resume) names the file, says it is truncated and gives the fix; following the fix works."""
    out = finished_ce_run
    last = out / "last.pth"
    _truncate(last)
    capsys.readouterr()
    before = _hashes(out)
    rc, stdout, err = _cls(capsys, *_cls_args(out, "ce", "SOLVER.EPOCHS", "1"))
    assert rc == 2 and stdout == ""
    first = _first_line(err)
    assert first.startswith(f"error: checkpoint {last} cannot be read ("), err
    assert f"; {last.stat().st_size} bytes: it is truncated (an interrupted copy, download or save) or not a " in first
    assert first.endswith(
        f"Fix: delete it to start this run over in {out}, or pass --overwrite to delete all of the run's outputs and "
        "start over (or put an intact copy of the file back to continue)."
    )
    assert "RNG" not in err and "Traceback" not in err
    assert _hashes(out) == before

    last.unlink()  # the fix
    rc, stdout, _ = _cls(capsys, *_cls_args(out, "ce", "SOLVER.EPOCHS", "1"))
    assert rc == 0 and json.loads(stdout.strip().splitlines()[-1])["method"] == "ce"
    assert [int(r[0]) for r in _metric_rows(out) if r[2] == "train/loss"] == [1]  # started over, not appended


def test_checkpoint_the_safe_loader_refuses(finished_ce_run, capsys):
    """What the old message was for: a file holding numpy objects (RNG states as this trainer stored them before)."""
    last = finished_ce_run / "last.pth"
    torch.save({"model": {}, "rng": np.random.get_state()}, last)
    before = _hashes(finished_ce_run)
    rc, _, err = _cls(capsys, *_cls_args(finished_ce_run, "ce", "SOLVER.EPOCHS", "1"))
    assert rc == 2
    assert _first_line(err).startswith(
        f"error: checkpoint {last} holds objects torch.load(weights_only=True) refuses (Unsupported "
    ), err
    assert "before RNG states were stored as tensors. Fix: delete it" in err
    assert _hashes(finished_ce_run) == before


# ------------------------------------------------------------------------------------------ item 4: evaluate_lvis.py


def _tool():
    return load_script("tools/evaluate_lvis.py", "lt_tools_evaluate_lvis_user_errors")


@pytest.fixture(scope="module")
def lvis(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvis")
    gt = make_lvis_gt(8, 12, seed=3)
    res = make_lvis_results(gt, seed=3, max_dets_per_image=20, empty_image_prob=0.0)
    (root / "gt.json").write_text(json.dumps(gt))
    return root, gt, res


def _results_file(folder, res) -> str:
    """A results file as Detectron2 writes it (json.dumps of the list), alone in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lvis_instances_results.json"
    path.write_text(json.dumps(res))
    return str(path)


def _evaluate(capsys, *argv):
    rc = _tool().main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize(
    "flag,value,first",
    [
        ("--max-dets", "-1", "error: --max-dets -1: must be an integer >= 1 (the per-image cap of standard AP;"),
        ("--max-dets", "0", "error: --max-dets 0: must be an integer >= 1 (the per-image cap of standard AP;"),
        ("--fixed-ap-k", "0", "error: --fixed-ap-k 0: must be an integer >= 1 (detections per class of Fixed AP;"),
        ("--fixed-ap-k", "-5", "error: --fixed-ap-k -5: must be an integer >= 1 (detections per class of Fixed AP;"),
        ("--workers", "0", "error: --workers 0: must be an integer >= 1 (processes; leave the flag out"),
        ("--workers", "-3", "error: --workers -3: must be an integer >= 1 (processes; leave the flag out"),
    ],
)
def test_numeric_flags(lvis, tmp_path, capsys, flag, value, first):
    root, _, res = lvis
    results = _results_file(tmp_path / "inference", res)
    before = _hashes(tmp_path)
    rc, out, err = _evaluate(capsys, "--gt", str(root / "gt.json"), "--results", results, flag, value)
    assert rc == 2 and out == ""
    assert _first_line(err).startswith(first), err
    assert _hashes(tmp_path) == before


def _bad(res, change):
    res = json.loads(json.dumps(res))
    change(res)
    return res


BAD_RESULTS = [
    # (name, change to the list, first line after "error: results '<file>': ")
    ("int entry", lambda r: r.insert(5, 42), "record [5] field '(record)' is 42 (a int), not a record; "),
    ("null entry", lambda r: r.insert(7, None), "record [7] field '(record)' is None (a NoneType), not a record; "),
    ("string score", lambda r: r[3].update(score="0.9"), "record [3] field 'score' is '0.9' (a str); "),
    ("boolean score", lambda r: r[3].update(score=True), "record [3] field 'score' is True (a bool); "),
]


@pytest.mark.parametrize("backend", [[], ["--lvis-api"]], ids=["fast", "lvis-api"])
@pytest.mark.parametrize("name,change,problem", BAD_RESULTS, ids=[c[0] for c in BAD_RESULTS])
def test_bad_results_entries(lvis, tmp_path, capsys, backend, name, change, problem):
    root, _, res = lvis
    results = _results_file(tmp_path / "inference", _bad(res, change))
    before = _hashes(tmp_path)
    rc, out, err = _evaluate(capsys, "--gt", str(root / "gt.json"), "--results", results, *backend)
    assert rc == 2 and out == ""
    assert _first_line(err).startswith(f"error: results {results!r}: {problem}"), err
    assert _hashes(tmp_path) == before


def test_missing_results_file(lvis, tmp_path, capsys):
    root, _, _ = lvis
    missing = str(tmp_path / "inference" / "lvis_instances_results.json")
    rc, _, err = _evaluate(capsys, "--gt", str(root / "gt.json"), "--results", missing)
    assert rc == 2
    assert _first_line(err) == (
        f"error: --results {missing!r} does not exist; pass the path of an existing json file (Detectron2's "
        "OUTPUT_DIR/inference/<dataset>/lvis_instances_results.json)"
    )
    assert not os.path.exists(tmp_path / "inference")


def test_output_that_is_a_file(lvis, tmp_path, capsys):
    root, _, res = lvis
    results = _results_file(tmp_path / "inference", res)
    (tmp_path / "report.txt").write_text("the user's notes")
    before = _hashes(tmp_path)
    rc, _, err = _evaluate(
        capsys, "--gt", str(root / "gt.json"), "--results", results, "--output", str(tmp_path / "report.txt")
    )
    assert rc == 2
    assert _first_line(err) == (
        f"error: --output {str(tmp_path / 'report.txt')!r} is an existing file, not a folder; pass a folder (it is "
        "created if absent), or leave --output out to write next to the results file"
    )
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("missing", None, "does not exist; pass the path of an existing json file"),
        ("not json", "{not json", "cannot be read as LVIS training annotations ("),
        ("not LVIS", json.dumps({"images": []}), "cannot be read as LVIS training annotations ("),
        ("other categories", "SMALL_GT", "has 5 categories, the gt 12; pass the LVIS-format training json"),
    ],
)
def test_bad_train_gt(lvis, tmp_path, capsys, name, content, problem):
    root, _, res = lvis
    results = _results_file(tmp_path / "inference", res)
    train_gt = tmp_path / "train.json"
    if content == "SMALL_GT":  # a valid LVIS training json of another label space
        small = make_lvis_gt(4, 5, seed=1)
        for image in small["images"]:
            image["coco_url"] = f"http://images.cocodataset.org/train2017/{image['id']:012d}.jpg"
        train_gt.write_text(json.dumps(small))
    elif content is not None:
        train_gt.write_text(content)
    before = _hashes(tmp_path)
    rc, out, err = _evaluate(capsys, "--gt", str(root / "gt.json"), "--results", results, "--train-gt", str(train_gt))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert _first_line(err).startswith(f"error: --train-gt {str(train_gt)!r} "), err
    assert problem in _first_line(err), err
    assert _hashes(tmp_path) == before


def test_training_run_reports_are_kept(lvis, tmp_path, capsys):
    """The issue: by default the tool overwrote the training run's per-class CSV, plot and summary."""
    root, _, res = lvis
    inference = tmp_path / "inference"
    results = _results_file(inference, res)
    for name in ("lvis_per_class.csv", "lvis_ap_vs_train_images.png", "lvis_summary.md"):
        (inference / name).write_text(f"the training run's {name}")
    before = _hashes(inference)
    args = ["--gt", str(root / "gt.json"), "--results", results, "--iou-type", "bbox", "--workers", "1"]
    rc, out, _ = _evaluate(capsys, *args)
    assert rc == 0
    new = inference / "evaluate_lvis-1"
    assert (
        f"{inference} already holds lvis_per_class.csv, lvis_ap_vs_train_images.png, lvis_summary.md (kept; "
        f"--overwrite replaces them): this evaluation's reports go to {new}"
    ) in out
    assert f"per-class AP: {new / 'lvis_per_class.csv'}" in out
    after = _hashes(inference)
    assert {k: v for k, v in after.items() if not k.startswith("evaluate_lvis-1")} == before
    assert {"lvis_per_class.csv", "lvis_summary.md"} <= set(os.listdir(new))

    rc, out, _ = _evaluate(capsys, *args)  # again: the next free folder
    assert rc == 0 and f"reports go to {inference / 'evaluate_lvis-2'}" in out

    rc, out, _ = _evaluate(capsys, *args, "--overwrite")
    assert rc == 0 and "already holds" not in out
    assert (inference / "lvis_per_class.csv").read_text() != "the training run's lvis_per_class.csv"


def test_evaluate_lvis_exit_status(lvis, tmp_path):
    """The real entry point: exit status 2 and one line, no traceback."""
    root, _, _ = lvis
    missing = str(tmp_path / "nothing.json")
    cmd = [sys.executable, "tools/evaluate_lvis.py", "--gt", str(root / "gt.json"), "--results", missing]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: --results {missing!r} does not exist; pass the path of an existing json file (Detectron2's "
        "OUTPUT_DIR/inference/<dataset>/lvis_instances_results.json)"
    )


@pytest.mark.parametrize("spoil", ["truncated", "another model"])
def test_m2m_g_checkpoint_that_cannot_serve(finished_ce_run, tmp_path, capsys, spoil):
    """METHOD.M2M.G_CHECKPOINT cut short, or holding another model's weights: one error line naming the key, the
    file, the reason and the fix, exit status 2, nothing written."""
    import torch

    g = tmp_path / "g.pth"
    if spoil == "truncated":
        g.write_bytes((finished_ce_run / "model_final.pth").read_bytes())
        _truncate(g)
    else:
        torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, g)
    out = tmp_path / "m2m"
    args = _cls_args(out, "m2m", "SOLVER.EPOCHS", "1", "METHOD.M2M.START_EPOCH", "0", "METHOD.M2M.G_CHECKPOINT", str(g))
    rc, stdout, err = _cls(capsys, *args)
    first = _first_line(err)
    assert rc == 2 and "Traceback" not in err, err
    assert first.startswith(f"error: METHOD.M2M.G_CHECKPOINT={str(g)!r} "), first
    assert ("cannot be read (" if spoil == "truncated" else "does not fit model 'digits_mlp'") in first
    assert ("it is truncated" if spoil == "truncated" else "Missing key(s) in state_dict") in first
    assert first.endswith("or leave METHOD.M2M.G_CHECKPOINT empty and the command line trains g first.")
    assert not out.exists() or not any(out.iterdir())  # nothing written
