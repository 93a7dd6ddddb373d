"""What every benchmark records beside its numbers."""

from __future__ import annotations

import os
import subprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> str:
  """HEAD of the repository the benchmark ran from ("unknown" outside a git checkout)."""
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True, cwd=REPO_ROOT).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
