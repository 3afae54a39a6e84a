"""The shared atomic checkpointer: weights-only loadable contents, RNG states, remote paths, detection subclass."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch
from iopath.common.file_io import PathHandler, PathManager
from torch import nn

from lt_detectron.engine import AtomicDetectionCheckpointer
from lt_detectron.utils.checkpoint import (
    AtomicCheckpointer,
    CheckpointError,
    rng_states,
    set_rng_states,
    weights_only_safe,
)


def _roundtrip(obj, tmp_path):
    path = tmp_path / "x.pth"
    torch.save(obj, path)
    return torch.load(path, weights_only=True)


def test_rng_states_load_weights_only_and_restore_every_generator(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in Python's
    state = _roundtrip(rng_states(), tmp_path)
    expected = (random.random(), np.random.normal(), np.random.random(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_states(state)
    got = (random.random(), np.random.normal(), np.random.random(), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


def test_numpy_payloads_become_tensors_that_numpy_reads_back(tmp_path):
    raw = {"window": np.arange(5, dtype=np.float64) / 3, "count": np.int64(7), "rows": [np.ones(2, np.int64)]}
    with pytest.raises(pickle.UnpicklingError):  # what torch >= 2.6 does by default with numpy in a checkpoint
        _roundtrip(raw, tmp_path)
    back = _roundtrip(weights_only_safe(raw), tmp_path)
    np.testing.assert_array_equal(np.asarray(back["window"]), raw["window"])
    assert np.asarray(back["window"]).dtype == np.float64 and back["count"] == 7 and isinstance(back["count"], int)
    model = nn.BatchNorm1d(3)
    safe = weights_only_safe(model.state_dict())
    assert safe._metadata == model.state_dict()._metadata  # module versions survive


class _MemoryHandler(PathHandler):
    """A remote-looking 'mem://' store that keeps files in a dict (no rename support, like object stores)."""

    def __init__(self):
        super().__init__()
        self.files: dict[str, bytes] = {}

    def _get_supported_prefixes(self):
        return ["mem://"]

    def _open(self, path, mode="r", **kwargs):
        import io

        handler = self

        class _Writer(io.BytesIO):
            def close(self):
                handler.files[path] = self.getvalue()
                super().close()

        if "w" in mode:
            return _Writer()
        return io.BytesIO(self.files[path])

    def _mkdirs(self, path, **kwargs):
        return None

    def _isfile(self, path, **kwargs):
        return path in self.files

    def _exists(self, path, **kwargs):
        return path in self.files


def test_saves_to_a_remote_uri_through_the_path_manager():
    model = nn.Linear(2, 2)
    ckpt = AtomicCheckpointer(model, "mem://run")
    handler = _MemoryHandler()
    ckpt.path_manager = PathManager()
    ckpt.path_manager.register_handler(handler)
    ckpt.save("last", step=4, state=np.zeros(3))
    assert set(handler.files) == {"mem://run/last.pth", "mem://run/last_checkpoint"}
    assert handler.files["mem://run/last_checkpoint"] == b"last.pth"
    data = ckpt.read("mem://run/last.pth")
    assert data["step"] == 4 and torch.equal(data["model"]["weight"], model.weight.detach())


def test_local_saves_are_atomic_and_load_weights_only(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = AtomicCheckpointer(model, str(tmp_path), optimizer=opt)
    ckpt.save("last", rng=rng_states(), history=[np.arange(3)])
    assert sorted(os.listdir(tmp_path)) == ["last.pth", "last_checkpoint"]  # no temporary file left
    state = torch.load(tmp_path / "last.pth", weights_only=True)
    assert {"model", "optimizer", "rng", "history"} <= set(state)
    assert ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == str(tmp_path / "last.pth")

    def crash(_f):
        raise OSError("disk full")

    with pytest.raises(OSError):
        from lt_detectron.utils.checkpoint import save_through

        save_through(ckpt.path_manager, str(tmp_path / "last.pth"), crash)
    assert sorted(os.listdir(tmp_path)) == ["last.pth", "last_checkpoint"]
    assert torch.load(tmp_path / "last.pth", weights_only=True)["model"].keys() == state["model"].keys()


def test_detection_checkpointer_is_the_shared_atomic_one(tmp_path):
    model = nn.Linear(2, 2)
    ckpt = AtomicDetectionCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001", iteration=1, hooks={"meta": {"window": np.ones(2)}})
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    state = torch.load(tmp_path / "model_0000001.pth", weights_only=True)
    assert state["iteration"] == 1 and torch.equal(state["hooks"]["meta"]["window"], torch.ones(2, dtype=torch.float64))


# ------------------------------------------------------------------ unreadable checkpoints (issue 22, item 5)


def _saved_run(tmp_path, cls=AtomicDetectionCheckpointer):
    """Two checkpoints, model_0000001.pth (weights 1) then model_0000002.pth (weights 2, tagged last)."""
    model = nn.Linear(2, 2)
    ckpt = cls(model, str(tmp_path))
    for it in (1, 2):
        with torch.no_grad():
            model.weight.fill_(it)
        ckpt.save(f"model_000000{it}", iteration=it)
        os.utime(tmp_path / f"model_000000{it}.pth", (it, it))  # distinct, ordered mtimes on coarse file systems
    return model, ckpt


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, damage, caplog):
    model, ckpt = _saved_run(tmp_path)
    torch.save({"model": {}}, tmp_path / "backbone.pth")  # newest, intact, not one of the run's checkpoints
    last = tmp_path / "model_0000002.pth"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:100])
    elif damage == "garbage":
        last.write_bytes(b"I12x\n.")  # "invalid literal for int()" from the unpickler
    else:
        last.unlink()
    with torch.no_grad():
        model.weight.zero_()
    with caplog.at_level("WARNING"):
        loaded = ckpt.resume_or_load("", resume=True)
    assert loaded["iteration"] == 1 and torch.all(model.weight == 1)
    warning = [r.getMessage() for r in caplog.records if "RESUME FELL BACK" in r.getMessage()]
    assert len(warning) == 1 and str(last) in warning[0] and "model_0000001.pth" in warning[0]


def test_resume_with_no_intact_checkpoint_names_the_files(tmp_path):
    model, ckpt = _saved_run(tmp_path)
    for name in ("model_0000001.pth", "model_0000002.pth"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        ckpt.resume_or_load("", resume=True)
    message = str(info.value)
    assert message.startswith(f"checkpoint {tmp_path / 'model_0000002.pth'} (named by {tmp_path / 'last_checkpoint'})")
    assert "cannot be read" in message and "1 tried" in message and "Fix:" in message


@pytest.mark.parametrize("cls", [AtomicDetectionCheckpointer, AtomicCheckpointer])
def test_unreadable_or_missing_weights_are_named(tmp_path, cls):
    model, ckpt = _saved_run(tmp_path, cls)
    bad = tmp_path / "model_0000002.pth"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        ckpt.resume_or_load(str(bad), resume=False)
    assert str(info.value).startswith(f"checkpoint {bad} cannot be read (")
    assert "truncated" in str(info.value) and info.value.path == str(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.resume_or_load(str(tmp_path / "nope.pth"), resume=False)
