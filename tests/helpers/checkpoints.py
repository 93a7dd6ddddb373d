"""A trained workdir with several checkpoints, and the ways the fault tests damage and inspect it
(tests/core/test_checkpointing.py, tests/end_to_end/test_faults.py)."""

import os
import shutil

from colorjax.core import checkpointing
from colorjax.core import distributed
from colorjax.training import run_setup
from tests.helpers import tiny_config

# The steps `fault_config()` checkpoints (conftest's `trained` workdir).
STEPS = (2, 4, 6)


def fault_config(num_train_steps: int = 6):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = num_train_steps
    config.max_checkpoints_to_keep = 10
    config.eval_every_steps = config.sample_every_steps = 1000
  return config


def copy_workdir(workdir: str, tmp_path) -> str:
  copy = str(tmp_path / "workdir")
  shutil.copytree(workdir, copy)
  return copy


def truncate_data_files(workdir: str, step: int) -> None:
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


def error_line(stderr: str) -> str:
  """The one `error: ...` line a command ends with (C++ logs may follow on the same line, and
  Orbax's threads, printing their own tracebacks as the process exits, may have left an
  indentation in front of it)."""
  lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("error: ")]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0].split("WARNING: All log messages")[0]


def checkpoint_steps(workdir: str) -> list[int]:
  return sorted(int(e) for e in os.listdir(os.path.join(workdir, "checkpoints")) if e.isdigit())


def abstract_state(config):
  mesh = distributed.make_data_mesh()
  setup = run_setup.RunSetup.create(config, mesh)
  return checkpointing.abstract_with_shardings(setup.abstract_state, setup.state_shardings)
