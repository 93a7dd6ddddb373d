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
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp

from conftest import REPO_ROOT, tiny_config
import launch_utils

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
  config_path = launch_utils.write_config_file(str(tmp_path / "tiny.py"), config)

  # The reference runs first, alone: two processes and a third on 2 cores would crawl.
  reference_dir = str(tmp_path / "one_process")
  driver = tmp_path / "reference.py"
  driver.write_text(_REFERENCE_DRIVER)
  reference = subprocess.run(
      [sys.executable, str(driver), config_path, reference_dir, str(COMPARED_STEPS[-1])],
      cwd=REPO_ROOT, env=launch_utils.cpu_env(4), capture_output=True, text=True, timeout=600)
  assert reference.returncode == 0, reference.stderr[-3000:]
  expected = launch_utils.read_scalars(reference_dir)

  workdir = str(tmp_path / "two_processes")
  address = f"127.0.0.1:{launch_utils.free_port()}"
  processes = [
      launch_utils.MainProcess(
          [f"--config={config_path}", f"--workdir={workdir}", f"--coordinator_address={address}",
           "--num_processes=2", f"--process_id={index}"],
          launch_utils.cpu_env(2), str(tmp_path / f"process_{index}.log"))
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

  got = launch_utils.read_scalars(workdir)
  for tag in ("g_loss", "g_l1", "g_gan", "d_loss", "g_grad_norm", "d_grad_norm"):
    for step in COMPARED_STEPS:
      np.testing.assert_allclose(got[tag][step], expected[tag][step], rtol=1e-4,
                                 err_msg=f"{tag} at step {step}")
  for key in ("psnr", "ab_error"):
    reference_record = json.load(open(os.path.join(reference_dir, "eval", "step_00000002.json")))
    np.testing.assert_allclose(record["model"][key], reference_record["model"][key], rtol=1e-4,
                               err_msg=key)
