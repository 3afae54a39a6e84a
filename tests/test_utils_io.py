"""Atomic writes: the umask's mode, recognisable temporary names, stale temporaries removed only when their writer
is gone."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from lt_detectron.utils.io import TEMP_SUFFIX, atomic_write, remove_stale_temporaries


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_umasks_mode(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        path = atomic_write(str(tmp_path / "report.md"), lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_a_failed_write_leaves_no_file(tmp_path):
    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(str(tmp_path / "model.pth"), fail)
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    host = socket.gethostname().split(".")[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited: its pid is free (reuse within the test is vanishingly unlikely)
    names = {
        "dead": f"model_0000099.pth.{host}.{dead_pid}.abc123{TEMP_SUFFIX}",
        "live": f"model_0000199.pth.{host}.{os.getpid()}.def456{TEMP_SUFFIX}",
        "other_host": f"model_0000299.pth.otherhost.{dead_pid}.ghi789{TEMP_SUFFIX}",
        "not_ours": "notes.txt.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    removed = remove_stale_temporaries(str(tmp_path))
    assert [os.path.basename(p) for p in removed] == [names["dead"]]
    assert sorted(os.listdir(tmp_path)) == sorted(n for k, n in names.items() if k != "dead")
    assert remove_stale_temporaries(str(tmp_path / "missing")) == []
