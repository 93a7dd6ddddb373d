"""Two real JAX processes on 127.0.0.1 (gloo CPU collectives) train like one process would.

Each process runs `python -m colorjax.main` with JAX_PLATFORMS=cpu and 2 simulated devices, so
the mesh has 4 devices over 2 processes and the tiny lsgan config's global batch of 8 is
4 rows per process. The reference is one process with 4 devices and the same global batch.

Data order. Each process reads its own shard of the records (`pipeline._process_shard`) and
`to_global_batch` places process 0's rows before process 1's on the mesh (devices are ordered
by process). A plain single-process run would read all records in one shuffled order, a
different global batch. So the reference's input stream is built from the pipeline itself, run
once as process 0 of 2 and once as process 1 of 2, and yields the concatenation of the two
local batches: exactly the global batch the two-process run should assemble. Everything after
the input (mesh, step, collectives, logging) is the trainer as shipped. Equal per-step losses
then show that the two processes assemble the global batch in that order and that their
gradients and BatchNorm statistics are reduced over all 4 devices.

Process 1 is then sent SIGTERM: JAX's preemption service must stop both processes at the same
step with one complete checkpoint (a process that stopped alone would leave the other waiting
in a collective forever).

Lost processes: `launch/local_cpu_2proc.sh` with a 3 s heartbeat timeout has process 1, then
process 0 (the coordinator) SIGKILLed mid-training; the launcher must print which process was
lost and how, the last complete checkpoint and a resume command that carries the run to its
end. A process that fails with its own error is named after JAX's shutdown timeout.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import REPO_ROOT, tiny_config
from tests.helpers import launch

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

NUM_STEPS = 40  # Far more than are compared: the run ends by SIGTERM, after step 3.
COMPARED_STEPS = (1, 2, 3)

# The reference: one process, the pipeline run as each of the two processes, batches
# concatenated in process order.
_REFERENCE_DRIVER = r'''
import importlib.util
import sys
from unittest import mock

import jax
import numpy as np

from colorjax import train
from colorjax.data import pipeline

config_path, workdir, num_steps = sys.argv[1:]
spec = importlib.util.spec_from_file_location("tiny_config", config_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config()
config.num_train_steps = int(num_steps)  # The learning rate is constant: steps compared agree.
create_train_dataset = pipeline.create_train_dataset


class TwoProcessStream:
  """The global batches of a 2-process run: process 0's local rows, then process 1's."""

  def __init__(self, config):
    self._streams = []
    for index in range(2):
      with mock.patch.object(jax, "process_index", lambda index=index: index), \
           mock.patch.object(jax, "process_count", lambda: 2):
        self._streams.append(iter(create_train_dataset(config)))

  def __iter__(self):
    return self

  def __next__(self):
    batches = [next(stream) for stream in self._streams]
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}

  def get_state(self):
    return {"process_0": self._streams[0].get_state(),
            "process_1": self._streams[1].get_state()}

  def set_state(self, state):
    self._streams[0].set_state(state["process_0"])
    self._streams[1].set_state(state["process_1"])


assert jax.process_count() == 1 and jax.device_count() == 4, jax.devices()
pipeline.create_train_dataset = TwoProcessStream
train.train_and_evaluate(config, workdir)
'''


def _stop_step(output: str) -> int:
  match = re.search(r"saved a checkpoint at step (\d+)", output)
  assert match, f"no 'saved a checkpoint' message in:\n{output[-3000:]}"
  return int(match.group(1))


def test_two_processes_match_one_process_and_stop_together_on_sigterm(tmp_path):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = NUM_STEPS
    config.checkpoint_every_steps = 2
    config.eval_every_steps = config.sample_every_steps = 2
  config_path = launch.write_config_file(str(tmp_path / "tiny.py"), config)

  # The reference runs first, alone: two processes and a third on 2 cores would crawl.
  reference_dir = str(tmp_path / "one_process")
  driver = tmp_path / "reference.py"
  driver.write_text(_REFERENCE_DRIVER)
  reference = subprocess.run(
      [sys.executable, str(driver), config_path, reference_dir, str(COMPARED_STEPS[-1])],
      cwd=REPO_ROOT, env=launch.cpu_env(4), capture_output=True, text=True, timeout=600)
  assert reference.returncode == 0, reference.stderr[-3000:]
  expected = launch.read_scalars(reference_dir)

  workdir = str(tmp_path / "two_processes")
  address = f"127.0.0.1:{launch.free_port()}"
  processes = [
      launch.MainProcess(
          [f"--config={config_path}", f"--workdir={workdir}", f"--coordinator_address={address}",
           "--num_processes=2", f"--process_id={index}"],
          launch.cpu_env(2), str(tmp_path / f"process_{index}.log"))
      for index in range(2)]
  try:
    processes[0].wait_for(lambda: processes[0].last_logged_step() >= COMPARED_STEPS[-1],
                          timeout=600, what=f"step {COMPARED_STEPS[-1]}")
    processes[1].popen.terminate()  # SIGTERM to one process only.
    codes = [p.wait(timeout=300) for p in processes]
  finally:
    for p in processes:
      p.kill()
  outputs = [p.output() for p in processes]
  assert codes == [0, 0], "\n\n".join(p.tail() for p in processes)
  assert "process 1 of 2" in outputs[1]

  # Both processes stopped after the same step, which is a complete checkpoint.
  stop_steps = [_stop_step(out) for out in outputs]
  assert stop_steps[0] == stop_steps[1], stop_steps
  stop = stop_steps[0]
  assert COMPARED_STEPS[-1] <= stop < NUM_STEPS
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  assert manager.latest_step() == stop, manager.all_steps()
  # Every process saved its own data iterator position: both took part in checkpointing.
  iterator_files = sorted(os.listdir(os.path.join(workdir, "checkpoints", str(stop), "data_iter")))
  assert "process_0-of-2.json" in iterator_files and "process_1-of-2.json" in iterator_files

  # Only process 0 writes event files, samples and eval JSON.
  events = [f for f in os.listdir(workdir) if f.startswith("events.out.tfevents")]
  assert len(events) == 1, events
  record = json.load(open(os.path.join(workdir, "eval", "step_00000002.json")))
  assert record["num_images"] == 6  # All eval images, gathered from both processes once.
  assert os.path.exists(os.path.join(workdir, "samples", "step_00000002.png"))

  got = launch.read_scalars(workdir)
  for tag in ("g_loss", "g_l1", "g_gan", "d_loss", "g_grad_norm", "d_grad_norm"):
    for step in COMPARED_STEPS:
      np.testing.assert_allclose(got[tag][step], expected[tag][step], rtol=1e-4,
                                 err_msg=f"{tag} at step {step}")
  for key in ("psnr", "ab_error"):
    reference_record = json.load(open(os.path.join(reference_dir, "eval", "step_00000002.json")))
    np.testing.assert_allclose(record["model"][key], reference_record["model"][key], rtol=1e-4,
                               err_msg=key)


# ------------------------------------------------------------------------------------------
# A lost process: reported by the launcher, not dumped; the run resumes.
# ------------------------------------------------------------------------------------------
HEARTBEAT_TIMEOUT_S = 3
LAUNCHER = os.path.join(REPO_ROOT, "launch", "local_cpu_2proc.sh")


class Launcher(launch.LoggedProcess):
  """`launch/local_cpu_2proc.sh WORKDIR ...` as a user runs it (its output in a file)."""

  def __init__(self, command: str, env: dict[str, str], log_path: str, workdir: str):
    super().__init__(["bash", "-c", command], env, log_path)
    self.workdir = workdir

  def process_pid(self, index: int) -> int | None:
    """The pid of training process `index` (children of the launcher, which execs into the
    supervisor), once it runs."""
    for task in os.listdir(f"/proc/{self.popen.pid}/task"):
      with open(f"/proc/{self.popen.pid}/task/{task}/children") as f:
        for pid in f.read().split():
          with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if f"--process_id={index}".encode() in cmdline.read().split(b"\0"):
              return int(pid)
    return None

  def kill(self) -> None:
    """Test clean-up: the launcher and its children, by pid."""
    if self.popen.poll() is None:
      for index in (0, 1):
        pid = self.process_pid(index)
        if pid:
          os.kill(pid, signal.SIGKILL)
    super().kill()


def _complete_steps(workdir: str) -> list[int]:
  folder = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def _lose_process(launcher: Launcher, index: int, after_step: int) -> tuple[int, float, str]:
  """SIGKILLs training process `index` once a checkpoint after `after_step` is complete;
  returns (its pid, seconds until the launcher exited, the launcher's output)."""
  workdir = launcher.workdir
  deadline = time.monotonic() + 600
  while not [s for s in _complete_steps(workdir) if s > after_step]:
    assert launcher.popen.poll() is None, launcher.output()[-3000:]
    assert time.monotonic() < deadline, launcher.output()[-3000:]
    time.sleep(0.1)
  pid = launcher.process_pid(index)
  os.kill(pid, signal.SIGKILL)
  killed = time.monotonic()
  assert launcher.wait(timeout=120) == 1, launcher.output()[-3000:]
  return pid, time.monotonic() - killed, launcher.output()


def _check_account(output: str, lost: int, pid: int, workdir: str, how_survivor_stopped: str
                   ) -> str:
  """The launcher's account of a lost process; returns the resume command it gives."""
  survivor = 1 - lost
  assert re.search(rf"^error: process {lost} of 2 \(pid {pid}\) was lost at [\d:]+: "
                   r"killed by SIGKILL$", output, re.M), output[-3000:]
  line = re.search(rf"^  process {survivor} \(pid \d+\): stopped by JAX's distributed service "
                   rf"\d+ s later, {how_survivor_stopped}; its abort report: (\S+)$", output, re.M)
  assert line, output[-3000:]
  # The runtime's dump is in that file, not on the console.
  assert "Terminating process because the JAX distributed service" in open(line.group(1)).read()
  for dump_line in ("Fatal Python error", "Check failure stack trace", "coordination_service"):
    assert dump_line not in output, output[-3000:]
  step = _complete_steps(workdir)[-1]
  assert (f"  last complete checkpoint: step {step} in {workdir}/checkpoints; the rerun resumes "
          "there") in output, output[-3000:]
  resume = re.search(r"^  resume with: (.+)$", output, re.M)
  assert resume, output[-3000:]
  return resume.group(1)


def test_a_lost_process_is_reported_and_the_run_resumes_from_its_last_checkpoint(tmp_path):
  """Process 1 and then process 0 (the coordinator) are SIGKILLed mid-training; each time the
  launcher prints the account, and its resume command carries the run to the end."""
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = 20  # Ample: each loss comes within a few steps of a start.
    config.checkpoint_every_steps = 2
    config.log_every_steps = 1
    config.eval_every_steps = config.sample_every_steps = 1000
    config.max_checkpoints_to_keep = 100
  config_path = launch.write_config_file(str(tmp_path / "tiny.py"), config)
  workdir = str(tmp_path / "run")
  # Short timeouts: a failure the test does not expect ends the run in seconds, not minutes.
  env = launch.cpu_env(2, COLORJAX_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT_S),
                            COLORJAX_SHUTDOWN_TIMEOUT="30")
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]  # Its python3.
  command = f"CONFIG={config_path} {LAUNCHER} {workdir}"

  # Process 1 lost: process 0 stops after the heartbeat timeout.
  first = Launcher(command, env, str(tmp_path / "first.log"), workdir)
  try:
    pid, seconds, output = _lose_process(first, index=1, after_step=2)
  finally:
    first.kill()
  print(f"process 1 lost: the launcher exited {seconds:.1f} s later")
  assert seconds < HEARTBEAT_TIMEOUT_S + 60, seconds  # Bounded: nothing hangs.
  resume = _check_account(output, 1, pid, workdir,
                          f"once process 1 had sent no heartbeat for {HEARTBEAT_TIMEOUT_S} s "
                          r"\(\$COLORJAX_HEARTBEAT_TIMEOUT\)")
  assert resume == f"CONFIG={config_path} DEVICES_PER_PROCESS=2 {LAUNCHER} {workdir}", resume
  lost_at = _complete_steps(workdir)[-1]

  # The coordinator lost: process 1 stops as soon as its connection to the service drops.
  second = Launcher(resume, env, str(tmp_path / "second.log"), workdir)
  try:
    pid, seconds, output = _lose_process(second, index=0, after_step=lost_at)
  finally:
    second.kill()
  print(f"process 0 lost: the launcher exited {seconds:.1f} s later")
  assert f"resuming at step {lost_at}" in output
  assert seconds < HEARTBEAT_TIMEOUT_S + 60, seconds
  resume = _check_account(output, 0, pid, workdir,
                          "on losing its connection to process 0, which hosts the service")
  lost_at = _complete_steps(workdir)[-1]

  # The resume command finishes the run from the last complete checkpoint.
  third = Launcher(resume, env, str(tmp_path / "third.log"), workdir)
  try:
    assert third.wait(timeout=600) == 0, third.output()[-3000:]
  finally:
    third.kill()
  assert f"resuming at step {lost_at}" in third.output()
  assert _complete_steps(workdir)[-1] == config.num_train_steps
  got = launch.read_scalars(workdir)
  assert sorted(got["g_loss"]) == list(range(1, config.num_train_steps + 1))
  assert all(np.isfinite(v) for v in got["g_loss"].values())


_FAILING_PROCESS = r'''
import sys

from colorjax.core import distributed
from jax.experimental import multihost_utils

address, process_id = sys.argv[1], int(sys.argv[2].split("=")[1])
distributed.initialize(address, 2, process_id)
if process_id == 1:
  raise RuntimeError("a bug in process 1")
multihost_utils.sync_global_devices("process 1 never comes")  # Process 0 waits for it here.
'''


def test_a_process_that_fails_with_an_error_is_named_after_the_shutdown_timeout(tmp_path):
  """Process 1 raises; process 0 waits in a collective. JAX holds process 1 at its exit for the
  shutdown timeout, then stops both; the account names process 1 and its error."""
  script = tmp_path / "failing.py"
  script.write_text(_FAILING_PROCESS)
  shutdown_timeout_s = 5
  env = launch.cpu_env(1, COLORJAX_SHUTDOWN_TIMEOUT=str(shutdown_timeout_s))
  started = time.monotonic()
  supervisor = subprocess.run(
      [sys.executable, "-m", "colorjax.core.multiprocess", "--processes=2",
       f"--workdir={tmp_path / 'run'}", "--resume=the same command", "--",
       sys.executable, str(script), f"127.0.0.1:{launch.free_port()}"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  seconds = time.monotonic() - started
  output = supervisor.stderr
  assert supervisor.returncode == 1, output[-3000:]
  assert "RuntimeError: a bug in process 1" in output  # Its own error stays on the console.
  assert re.search(r"^error: process 1 of 2 \(pid \d+\) was lost at [\d:]+: failed with an "
                   r"error \(its traceback is above\)", output, re.M), output[-3000:]
  assert re.search(r"^  process 0 \(pid \d+\): stopped by JAX's distributed service", output,
                   re.M), output[-3000:]
  assert f"  no complete checkpoint in {tmp_path / 'run'}" in output
  assert "  resume with: the same command" in output
  assert "Fatal Python error" not in output and "Check failure" not in output, output[-3000:]
  print(f"process 1 raised; the supervisor exited {seconds:.1f} s after starting")
  assert seconds > shutdown_timeout_s  # JAX held the failed process for the shutdown timeout.
