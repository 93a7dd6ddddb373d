"""Faults users and clusters cause, on real files and real processes (issue 15).

* A damaged newest checkpoint (a data file truncated, as by a partial copy): readers skip it
  and warn, the trainer moves it to checkpoints_damaged/ and resumes from the step before.
* A checkpoint of another model (changed config): the differing keys are listed.
* Two trainers on one workdir: the second fails at once naming the first; a SIGKILLed
  trainer's lock is taken over.
* A full disk: RLIMIT_FSIZE in the subprocess (with SIGXFSZ ignored, writes past the limit
  fail with EFBIG, as they fail with ENOSPC on a full disk) stops the trainer with a clear
  message and the last checkpoint intact; prepare and colorize leave no partial file.
"""

import contextlib
import json
import logging
import os
import pathlib
import re
import resource
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image
import skimage.data

from colorjax import inference
from colorjax import train
from colorjax.core import checkpointing
from colorjax.core import distributed
from colorjax.core import workdir_lock
from colorjax.training import run_setup
from tests.helpers import REPO_ROOT, tiny_config
from tests.helpers import launch

STEPS = (2, 4, 6)


def _config(num_train_steps: int = 6):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = num_train_steps
    config.max_checkpoints_to_keep = 10
    config.eval_every_steps = config.sample_every_steps = 1000
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir with checkpoints at steps 2, 4 and 6 (copy it before damaging it)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "workdir")
  train.train_and_evaluate(_config(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(s) for s in STEPS]
  return workdir


def _copy(workdir: str, tmp_path) -> str:
  copy = str(tmp_path / "workdir")
  shutil.copytree(workdir, copy)
  return copy


def _truncate_data_files(workdir: str, step: int) -> None:
  """Cuts every array data file of `step` to 1000 bytes, as a partial copy would.

  Every file, not just the biggest: readers restore the generator's arrays alone, and those
  may all sit in a file the biggest one is not.
  """
  state = os.path.join(workdir, "checkpoints", str(step), "state")
  for root, _, names in os.walk(state):
    for name in names:
      path = os.path.join(root, name)
      if os.sep + "d" + os.sep in path + os.sep and os.path.getsize(path) > 1000:
        os.truncate(path, 1000)


def _error_line(stderr: str) -> str:
  """The one `error: ...` line a command ends with (C++ logs may follow on the same line, and
  Orbax's threads, printing their own tracebacks as the process exits, may have left an
  indentation in front of it)."""
  lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("error: ")]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0].split("WARNING: All log messages")[0]


def _steps(workdir: str) -> list[int]:
  return sorted(int(e) for e in os.listdir(os.path.join(workdir, "checkpoints")) if e.isdigit())


def _abstract(config):
  mesh = distributed.make_data_mesh()
  setup = run_setup.RunSetup.create(config, mesh)
  return checkpointing.abstract_with_shardings(setup.abstract_state, setup.state_shardings)


# ------------------------------------------------------------------------------------------
# 1. A damaged newest checkpoint.
# ------------------------------------------------------------------------------------------
def test_damaged_latest_checkpoint_readers_skip_it_and_the_trainer_moves_it_aside(
    trained, tmp_path, caplog):
  workdir = _copy(trained, tmp_path)
  _truncate_data_files(workdir, 6)
  caplog.set_level(logging.WARNING)

  # Readers (colorize, serve, export go through Colorizer.from_workdir; eval) use step 4 and
  # leave the workdir as it is.
  colorizer = inference.Colorizer.from_workdir(workdir)
  assert colorizer.step == 4
  assert colorizer(skimage.data.astronaut()[:40, :50]).shape == (40, 50, 3)
  warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert warnings and "step 6" in warnings[0] and "OUT_OF_RANGE" in warnings[0]
  assert "\n" not in warnings[0] and len(warnings[0]) < 500  # One line, not a traceback.
  assert train.evaluate_checkpoint(_config(), workdir)["psnr"] > 0
  assert json.load(open(os.path.join(workdir, "eval", "latest.json")))["step"] == 4
  assert _steps(workdir) == [2, 4, 6]
  assert not os.path.exists(os.path.join(workdir, checkpointing.DAMAGED_DIR))
  # An explicitly requested damaged step is not silently replaced by another one.
  with pytest.raises(checkpointing.NoUsableCheckpointError, match="tried step 6: .*OUT_OF_RANGE"):
    inference.Colorizer.from_workdir(workdir, step=6)

  # The trainer moves step 6 aside (kept), resumes from 4 and writes a new, good step 6.
  caplog.clear()
  state = train.train_and_evaluate(_config(8), workdir)
  assert int(state.step) == 8
  messages = " | ".join(r.getMessage() for r in caplog.records)
  assert "moved damaged checkpoint step 6" in messages and "resuming from step 4" in messages
  assert _steps(workdir) == [2, 4, 6, 8]
  assert os.listdir(os.path.join(workdir, checkpointing.DAMAGED_DIR)) == ["6"]
  assert inference.Colorizer.from_workdir(workdir).step == 8


def test_no_loadable_checkpoint_is_one_error_listing_every_step_and_moves_nothing(
    trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  for step in STEPS:
    _truncate_data_files(workdir, step)
  manager = checkpointing.make_manager(workdir, 10)
  with pytest.raises(checkpointing.NoUsableCheckpointError) as error:
    checkpointing.restore_newest_loadable(manager, _abstract(_config()), move_damaged=True)
  manager.close()
  message = str(error.value)
  assert "\n" not in message and "could be restored (tried step 6: " in message
  assert all(f"step {s}: " in message for s in STEPS), message
  assert _steps(workdir) == list(STEPS)  # A failure common to all steps moves nothing.

  # The command line says the same in one line (TensorStore's threads may still print stray
  # "Event loop is closed" tracebacks of the abandoned reads before it).
  result = subprocess.run(
      [sys.executable, "-m", "colorjax.colorize", f"--workdir={workdir}", "--no_progress",
       os.path.join(REPO_ROOT, "colorjax", "static", "index.html"), "-o", str(tmp_path / "o")],
      cwd=REPO_ROOT, env=launch.cpu_env(1), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-3000:]
  assert _error_line(result.stderr).startswith("error: no checkpoint in ")


# ------------------------------------------------------------------------------------------
# 5. A checkpoint of another model.
# ------------------------------------------------------------------------------------------
def test_changed_model_lists_missing_unexpected_and_reshaped_keys(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  config_path = os.path.join(workdir, "config.json")
  config = json.load(open(config_path))
  # One U-Net level more (keys missing) and narrower features (shapes differ).
  config["model"]["generator_kwargs"].update({"num_downs": 4, "features": 4})
  json.dump(config, open(config_path, "w"))
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    inference.Colorizer.from_workdir(workdir)
  message = str(error.value)
  print(message)
  assert "\n" not in message and "step 6" in message
  assert "missing from the checkpoint (" in message
  assert re.search(r"of another shape \(ema/.*: checkpoint \(16,\), model \(8,\)", message)
  # No step was taken for damaged: nothing was skipped or moved.
  assert _steps(workdir) == list(STEPS)

  # --mode=eval with one level fewer: the checkpoint's extra level is unexpected.
  changed = _config()
  with changed.unlocked():
    changed.model.generator_kwargs.num_downs = 2
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"unexpected in the checkpoint \(.*ema/params/"):
    train.evaluate_checkpoint(changed, workdir)


def test_readers_restore_and_check_only_the_generator(trained, tmp_path):
  """Colorize, serve, export and compare read the generator's arrays alone (a partial
  restore): they get exactly the trainer's weights, and a changed discriminator, which stops
  the trainer's full restore, does not concern them."""
  workdir = _copy(trained, tmp_path)
  manager = checkpointing.make_manager(workdir, 10, read_only=True)
  state, step = checkpointing.restore_newest_loadable(manager, _abstract(_config()))
  averaged = inference.Colorizer.from_workdir(workdir)
  raw = inference.Colorizer.from_workdir(workdir, weights="raw")
  assert step == averaged.step == raw.step == 6
  same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  same(averaged.variables, state.ema)
  same(raw.variables, {"params": state.g.params, "batch_stats": state.g.batch_stats})

  config_path = os.path.join(workdir, "config.json")
  config = json.load(open(config_path))
  config["model"]["discriminator_kwargs"]["features"] = 4  # Narrower: every D kernel differs.
  json.dump(config, open(config_path, "w"))
  assert inference.Colorizer.from_workdir(workdir).step == 6
  changed = _config()
  with changed.unlocked():
    changed.model.discriminator_kwargs.features = 4
  with pytest.raises(checkpointing.CheckpointMismatchError, match=r"of another shape \(d/"):
    checkpointing.restore_newest_loadable(manager, _abstract(changed))
  manager.close()


# ------------------------------------------------------------------------------------------
# 2. Two trainers on one workdir.
# ------------------------------------------------------------------------------------------
def test_second_trainer_fails_naming_the_first_and_a_killed_trainers_lock_is_taken_over(
    trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  config_path = launch.write_config_file(str(tmp_path / "long.py"), _config(400))
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
  last_line = _error_line(second.stderr)
  assert last_line.startswith("error: workdir") and "in use by another training job" in last_line
  assert f"pid {first.popen.pid}" in last_line and socket.gethostname() in last_line
  assert f"started {holder['start']}" in last_line
  assert "Traceback" not in second.stderr

  # The killed trainer's lock file still names it; the next trainer takes over (and, at the
  # 6 steps the workdir already holds, has nothing left to train: quick).
  config_path = launch.write_config_file(str(tmp_path / "short.py"), _config(6))
  third = launch.run_main([f"--config={config_path}", f"--workdir={workdir}"], env,
                                str(tmp_path / "third.log"))
  assert re.search(rf"taking over a stale lock .*pid {first.popen.pid}\b", third.output())
  assert open(os.path.join(workdir, workdir_lock.LOCK_FILE)).read() == ""  # Released.


_HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({"host": sys.argv[2], "pid": int(sys.argv[3]),
                         "start": "2026-01-01T00:00:00+00:00"}).encode())
print("locked", flush=True)
time.sleep(120)
"""


def _hold_lock(path: str, host: str, pid: int) -> subprocess.Popen:
  """A real process holding the flock with the given holder record (as a forked data worker
  of a dead trainer would)."""
  process = subprocess.Popen([sys.executable, "-c", _HOLDER, path, host, str(pid)],
                             stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == "locked"
  return process


def test_lock_held_by_an_orphan_of_a_dead_trainer_is_taken_over(tmp_path):
  workdir = str(tmp_path)
  path = os.path.join(workdir, workdir_lock.LOCK_FILE)
  finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
  dead_pid = int(finished.stdout)
  # The holder on this host is alive: refused.
  live = _hold_lock(path, socket.gethostname(), os.getpid())
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getpid()}, started"):
      workdir_lock.acquire(workdir)
  finally:
    live.kill()
    live.wait()
  # The recorded holder is dead, but an orphan still holds the flock: taken over.
  orphan = _hold_lock(path, socket.gethostname(), dead_pid)
  try:
    fd = workdir_lock.acquire(workdir)
    assert json.load(open(path))["pid"] == os.getpid()
    workdir_lock.release(fd)
  finally:
    orphan.kill()
    orphan.wait()
  # A holder on another host cannot be checked: refused, named.
  other = _hold_lock(path, "other-host.example", dead_pid)
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match="host other-host.example"):
      workdir_lock.acquire(workdir)
  finally:
    other.kill()
    other.wait()


# ------------------------------------------------------------------------------------------
# 3. A full disk, as RLIMIT_FSIZE makes it for one process.
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
  config_path = launch.write_config_file(str(tmp_path / "ten.py"), _config(10))
  with _small_filesystem(str(tmp_path / "disk"), 16) as disk:
    if disk:
      workdir = _copy(trained, pathlib.Path(disk))
      # Leave 150 kB: a checkpoint (~600 kB) does not fit.
      with open(os.path.join(disk, "filler"), "wb") as f:
        f.write(b"\0" * (shutil.disk_usage(disk).free - 150_000))
      result = _run_limited(["colorjax.main", f"--config={config_path}",
                             f"--workdir={workdir}"], resource.RLIM_INFINITY)
      assert result.returncode == 2, result.stderr[-3000:]
      assert "Traceback" not in result.stderr
      assert re.match(r"error: a checkpoint needs about \d+\.\d MB \(the train state\) and .* "
                      r"has 0\.1 MB free", _error_line(result.stderr)), result.stderr[-3000:]
      assert _steps(workdir) == list(STEPS)
  workdir = _copy(trained, tmp_path)
  args = ["colorjax.main", f"--config={config_path}", f"--workdir={workdir}"]
  # 20 kB per file: the event file and config.json fit, a checkpoint's data files do not.
  result = _run_limited(args, 20_000)
  reason = r"the file size limit \(ulimit -f\) was reached \(EFBIG\)"
  assert result.returncode == 1, result.stderr[-3000:]
  # Orbax's threads log their own tracebacks first; the run's last word is this one line.
  last_line = _error_line(result.stderr)
  print(last_line)
  assert re.match(rf"error: checkpoint at step 8 could not be written to .*/checkpoints: "
                  rf"{reason}; a checkpoint needs about \d+\.\d MB \(the train state\), "
                  r".* MB free there; the last complete checkpoint \(step 6\) is intact",
                  last_line), last_line
  assert _steps(workdir) == list(STEPS)
  manager = checkpointing.make_manager(workdir, 10, read_only=True)
  state, step = checkpointing.restore_newest_loadable(manager, _abstract(_config()))
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
  last_line = _error_line(result.stderr)
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
