"""Which code produced a result: the git commit of a checkout, for results files and run summaries."""

from __future__ import annotations

import subprocess

__all__ = ["git_commit"]


def _git(repo: str, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_commit(repo: str) -> str:
    """'<short hash>' plus ' (+ uncommitted changes)' when tracked files differ from it; 'unknown' outside git."""
    commit = _git(repo, "rev-parse", "--short=10", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return commit + (" (+ uncommitted changes)" if dirty else "")
