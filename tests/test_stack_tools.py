"""The stack tooling: lock files (tools/lock.sh) and interpreter lookup (tools/find_python.sh)."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_lock_freeze_then_check_detects_drift(tmp_path):
    lock = tmp_path / "env.lock"
    frozen = _run("tools/lock.sh", "freeze", sys.executable, str(lock), "test header")
    assert frozen.returncode == 0, frozen.stderr
    lines = lock.read_text().splitlines()
    assert lines[0] == "# test header" and any(line.startswith("# Python ") for line in lines)
    pins = [line for line in lines if not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert not any(line.lower().startswith(("pip==", "lt-detectron", "lt_detectron")) for line in pins)
    assert any(line.lower().startswith("torch==") for line in pins)
    assert _run("tools/lock.sh", "check", sys.executable, str(lock)).returncode == 0

    torch_pin = next(line for line in pins if line.lower().startswith("torch=="))
    lock.write_text(lock.read_text().replace(torch_pin, "torch==0.0.1") + "not-installed-package==1.0\n")
    drift = _run("tools/lock.sh", "check", sys.executable, str(lock))
    assert drift.returncode == 1
    assert "torch==0.0.1" in drift.stderr and "not-installed-package==1.0" in drift.stderr and "Fix:" in drift.stderr


def test_find_python_finds_this_interpreter_version_and_explains_a_missing_one():
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = _run("tools/find_python.sh", version)
    assert found.returncode == 0
    check = f"import sys; assert sys.version_info[:2] == ({sys.version_info.major}, {sys.version_info.minor})"
    assert subprocess.run([found.stdout.strip(), "-c", check]).returncode == 0
    missing = _run("tools/find_python.sh", "2.1")
    assert missing.returncode == 1 and "PYTHON21" in missing.stderr
