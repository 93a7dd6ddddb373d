"""Helpers for tests that run `colorjax.main` as real subprocesses (several processes, signals).

Subprocesses get their config as a file (a locked ConfigDict cannot gain keys from the command
line, and the tiny nets add keys), their own device count through XLA_FLAGS, and their stderr
(absl logs) in a file that the test reads while they run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from tests.helpers import REPO_ROOT

# The trainer's logging writer prints a step's scalars as `[<step>] name=value, ...` (clu's format).
_STEP_LINE = re.compile(r"\] \[(\d+)\] .*\bg_loss=")


def write_config_file(path: str, config: Any) -> str:
  """A config file whose `get_config()` rebuilds `config` exactly (plain Python literals)."""
  with open(path, "w") as f:
    f.write("import ml_collections\n\n\ndef get_config():\n"
            f"  return ml_collections.ConfigDict({config.to_dict()!r})\n")
  return path


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def cpu_env(num_devices: int, **extra: str) -> dict[str, str]:
  """This environment with JAX on `num_devices` simulated CPU devices (replacing conftest's 8)."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  flags.append(f"--xla_force_host_platform_device_count={num_devices}")
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags),
              TF_CPP_MIN_LOG_LEVEL="2", **extra)


class LoggedProcess:
  """A command running in the background, its stdout and stderr teed to `log_path`."""

  def __init__(self, command: list[str], env: dict[str, str], log_path: str):
    self.log_path = log_path
    self._log = open(log_path, "w")
    self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=self._log,
                                  stderr=subprocess.STDOUT)

  def output(self) -> str:
    with open(self.log_path, errors="replace") as f:
      return f.read()

  def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
      if self.popen.poll() is not None:
        raise AssertionError(f"process exited ({self.popen.returncode}) before {what}:\n"
                             f"{self.tail()}")
      if time.monotonic() > deadline:
        raise AssertionError(f"timed out waiting for {what}:\n{self.tail()}")
      time.sleep(0.05)

  def wait(self, timeout: float) -> int:
    try:
      return self.popen.wait(timeout)
    finally:
      self._log.close()

  def kill(self) -> None:
    if self.popen.poll() is None:
      self.popen.kill()
      self.popen.wait()
    self._log.close()

  def tail(self, lines: int = 40) -> str:
    return "\n".join(self.output().splitlines()[-lines:])


class MainProcess(LoggedProcess):
  """`python -m colorjax.main ...` running in the background, stderr teed to `log_path`."""

  def __init__(self, args: list[str], env: dict[str, str], log_path: str):
    # --verbosity=0: the libraries' INFO logs too, which the tests read (the step's scalars,
    # "resumed from step N"); a user's console shows only the progress lines without it.
    super().__init__([sys.executable, "-m", "colorjax.main", "--verbosity=0", *args], env,
                     log_path)

  def last_logged_step(self) -> int:
    """The highest step whose losses this process has logged so far (0 before the first)."""
    steps = [int(m.group(1)) for m in _STEP_LINE.finditer(self.output())]
    return max(steps, default=0)


def run_main(args: list[str], env: dict[str, str], log_path: str,
             timeout: float = 600) -> MainProcess:
  """Runs main to the end; fails showing its log tail unless it exits 0."""
  process = MainProcess(args, env, log_path)
  try:
    rc = process.wait(timeout)
  finally:
    process.kill()
  assert rc == 0, f"exit status {rc}:\n{process.tail()}"
  return process


def read_scalars(workdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} over the event files in time order: a later value of a step wins.

  A process killed by SIGKILL can leave a truncated last record; what precedes it is kept.
  Read without TensorFlow (colorjax.core.summaries), so these tests run in the core install too.
  """
  from colorjax.core import summaries
  return summaries.read_scalars(workdir)
