"""Faults users and clusters cause, on real files and real processes (issue 15).

* Two trainers on one workdir: the second fails at once naming the first; a SIGKILLed
  trainer's lock is taken over.
* A full disk: RLIMIT_FSIZE in the subprocess (with SIGXFSZ ignored, writes past the limit
  fail with EFBIG, as they fail with ENOSPC on a full disk) stops the trainer with a clear
  message and the last checkpoint intact; prepare and colorize leave no partial file.

Damaged checkpoints and checkpoints of another model: tests/core/test_checkpointing.py; a lock
held by an orphan of a dead trainer: tests/core/test_workdir_lock.py.
"""

import contextlib
import json
import os
import pathlib
import re
import resource
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
import skimage.data

from colorjax.core import checkpointing
from colorjax.core import workdir_lock
from tests.helpers import REPO_ROOT
from tests.helpers import launch
from tests.helpers.checkpoints import (STEPS, abstract_state, checkpoint_steps, copy_workdir,
                                       error_line, fault_config)

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).


# ------------------------------------------------------------------------------------------
# 1. Two trainers on one workdir.
# ------------------------------------------------------------------------------------------
def test_second_trainer_fails_naming_the_first_and_a_killed_trainers_lock_is_taken_over(
    trained, tmp_path):
  workdir = copy_workdir(trained, tmp_path)
  config_path = launch.write_config_file(str(tmp_path / "long.py"), fault_config(400))
  env = launch.cpu_env(1)
  args = [f"--config={config_path}", f"--workdir={workdir}"]
  first = launch.MainProcess(args, env, str(tmp_path / "first.log"))
  try:
    first.wait_for(lambda: first.last_logged_step() >= 7, 300, "the first trainer's step 7")
    second = subprocess.run([sys.executable, "-m", "colorjax.main", *args], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    holder = json.load(open(os.path.join(workdir, workdir_lock.LOCK_FILE)))
    first.popen.kill()  # SIGKILL: no cleanup; the kernel drops the flock.
    first.wait(60)
  finally:
    first.kill()
  assert second.returncode == 1, second.stderr[-3000:]
  last_line = error_line(second.stderr)
  assert last_line.startswith("error: workdir") and "in use by another training job" in last_line
  assert f"pid {first.popen.pid}" in last_line and socket.gethostname() in last_line
  assert f"started {holder['start']}" in last_line
  assert "Traceback" not in second.stderr

  # The killed trainer's lock file still names it; the next trainer takes over (and, at the
  # 6 steps the workdir already holds, has nothing left to train: quick).
  config_path = launch.write_config_file(str(tmp_path / "short.py"), fault_config(6))
  third = launch.run_main([f"--config={config_path}", f"--workdir={workdir}"], env,
                                str(tmp_path / "third.log"))
  assert re.search(rf"taking over a stale lock .*pid {first.popen.pid}\b", third.output())
  assert open(os.path.join(workdir, workdir_lock.LOCK_FILE)).read() == ""  # Released.


# ------------------------------------------------------------------------------------------
# 2. A full disk, as RLIMIT_FSIZE makes it for one process.
# ------------------------------------------------------------------------------------------
# Sets the limit, then execs the command: limits and an ignored SIGXFSZ survive exec. (A
# preexec_fn would run Python in a child forked from this multithreaded JAX process.)
_LIMITED = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Else the kernel kills the writer.
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.argv[2], sys.argv[2:])
"""


def _run_limited(args: list[str], limit: int, timeout: float = 300) -> subprocess.CompletedProcess:
  """`python -m <args>` with every file it writes limited to `limit` bytes (EFBIG beyond)."""
  env = launch.cpu_env(1, PYTHONDONTWRITEBYTECODE="1")
  return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), sys.executable, "-m", *args],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def _small_filesystem(path: str, size_mb: int):
  """A real tmpfs of `size_mb` at `path` if this process may mount one (root), else None."""
  os.makedirs(path)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path],
                           capture_output=True).returncode == 0 if os.geteuid() == 0 else False
  try:
    yield path if mounted else None
  finally:
    if mounted:
      subprocess.run(["umount", "-l", path], check=False)


def test_full_disk_during_a_checkpoint_stops_training_and_keeps_the_last_checkpoint(
    trained, tmp_path):
  """A disk already too full for a checkpoint is refused before the first step (on a real full
  tmpfs where one can be mounted); space that runs out during the run (RLIMIT_FSIZE, EFBIG, as
  the preflight cannot foresee it) stops the run at that checkpoint."""
  config_path = launch.write_config_file(str(tmp_path / "ten.py"), fault_config(10))
  with _small_filesystem(str(tmp_path / "disk"), 16) as disk:
    if disk:
      workdir = copy_workdir(trained, pathlib.Path(disk))
      # Leave 150 kB: a checkpoint (~600 kB) does not fit.
      with open(os.path.join(disk, "filler"), "wb") as f:
        f.write(b"\0" * (shutil.disk_usage(disk).free - 150_000))
      result = _run_limited(["colorjax.main", f"--config={config_path}",
                             f"--workdir={workdir}"], resource.RLIM_INFINITY)
      assert result.returncode == 2, result.stderr[-3000:]
      assert "Traceback" not in result.stderr
      assert re.match(r"error: a checkpoint needs about \d+\.\d MB \(the train state\) and .* "
                      r"has 0\.1 MB free", error_line(result.stderr)), result.stderr[-3000:]
      assert checkpoint_steps(workdir) == list(STEPS)
  workdir = copy_workdir(trained, tmp_path)
  args = ["colorjax.main", f"--config={config_path}", f"--workdir={workdir}"]
  # 20 kB per file: the event file and config.json fit, a checkpoint's data files do not.
  result = _run_limited(args, 20_000)
  reason = r"the file size limit \(ulimit -f\) was reached \(EFBIG\)"
  assert result.returncode == 1, result.stderr[-3000:]
  # Orbax's threads log their own tracebacks first; the run's last word is this one line.
  last_line = error_line(result.stderr)
  print(last_line)
  assert re.match(rf"error: checkpoint at step 8 could not be written to .*/checkpoints: "
                  rf"{reason}; a checkpoint needs about \d+\.\d MB \(the train state\), "
                  r".* MB free there; the last complete checkpoint \(step 6\) is intact",
                  last_line), last_line
  assert checkpoint_steps(workdir) == list(STEPS)
  manager = checkpointing.make_manager(workdir, 10, read_only=True)
  state, step = checkpointing.restore_newest_loadable(manager, abstract_state(fault_config()))
  assert step == 6 and int(state.step) == 6
  manager.close()


def _photos(folder, sizes) -> list[str]:
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i, (photo, size) in enumerate(zip((skimage.data.astronaut(), skimage.data.coffee(),
                                         skimage.data.chelsea()), sizes)):
    path = os.path.join(folder, f"photo{i}.png")
    Image.fromarray(photo).resize(size).save(path)
    paths.append(path)
  return paths


def test_full_disk_in_prepare_says_so_and_leaves_no_partial_chunk(tmp_path):
  pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")
  _photos(str(tmp_path / "src"), [(400, 400)] * 3)
  data_dir = tmp_path / "tfds"
  result = _run_limited(["colorjax.prepare", f"--src={tmp_path / 'src'}", "--name=photos",
                         f"--data_dir={data_dir}", "--workers=1", "--no_progress"], 100_000)
  assert result.returncode == 2, result.stderr[-3000:]
  last_line = error_line(result.stderr)
  assert re.match(r"error: cannot write the decoded chunk .*: the file size limit .* \(EFBIG\); "
                  r"it needs \d+\.\d MB", last_line), last_line
  work = data_dir / ".colorjax_prepare" / "photos"
  assert os.listdir(work) == []  # No chunk, complete or partial.


def test_full_disk_in_colorize_leaves_no_half_written_image(trained, tmp_path):
  small, large = _photos(str(tmp_path / "in"), [(48, 32), (900, 700)])
  out = tmp_path / "out"
  result = _run_limited(["colorjax.colorize", f"--workdir={trained}", "--no_progress", small,
                         large, "-o", str(out)], 60_000)
  assert result.returncode == 1, result.stderr[-3000:]  # Some written, some failed.
  assert "written: 1, skipped: 1" in result.stdout
  assert re.search(r"skipped .*photo1.png: cannot write .*photo1_color.png: File too large",
                   result.stdout), result.stdout
  assert sorted(os.listdir(out)) == ["photo0_color.png"]  # No partial or temporary file.
  assert np.asarray(Image.open(out / "photo0_color.png")).shape == (32, 48, 3)
