"""Where a result came from: the commit of the rear checkout that produced it."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str:
    """The commit of the rear checkout (with '+dirty' for uncommitted tracked changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]  # the checkout holding the rear package
    try:
        run = lambda *args: subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,  # noqa: E731
                                           check=True, timeout=10).stdout.strip()
        commit = run("rev-parse", "HEAD")
        return commit + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
