"""Checkpoints (colorjax/core/checkpointing.py) that cannot be used: a damaged newest step is
skipped by readers and moved aside by the trainer; no loadable step is one error; a checkpoint
of another model lists the differing keys; readers restore and check the generator alone.

On conftest's `trained` workdir (checkpoints at steps 2, 4 and 6), copied before each change.
Other checkpoint tests: the grain iterator's state (tests/data/test_pipeline.py), resume
(tests/test_train.py), a non-finite loss (tests/test_train.py), signals and a full disk
(tests/end_to_end/test_preemption.py, tests/end_to_end/test_faults.py).
"""

import json
import logging
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import skimage.data

from colorjax import inference
from colorjax import train
from colorjax.core import checkpointing
from tests.helpers import REPO_ROOT
from tests.helpers import launch
from tests.helpers.checkpoints import (STEPS, abstract_state, checkpoint_steps, copy_workdir,
                                       error_line, fault_config, truncate_data_files)

pytestmark = pytest.mark.slow  # Every test uses conftest's trained workdir (6 steps, ~20-90 s).


def test_damaged_latest_checkpoint_readers_skip_it_and_the_trainer_moves_it_aside(
    trained, tmp_path, caplog):
  workdir = copy_workdir(trained, tmp_path)
  truncate_data_files(workdir, 6)
  caplog.set_level(logging.WARNING)

  # Readers (colorize, serve, export go through Colorizer.from_workdir; eval) use step 4 and
  # leave the workdir as it is.
  colorizer = inference.Colorizer.from_workdir(workdir)
  assert colorizer.step == 4
  assert colorizer(skimage.data.astronaut()[:40, :50]).shape == (40, 50, 3)
  warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert warnings and "step 6" in warnings[0] and "OUT_OF_RANGE" in warnings[0]
  assert "\n" not in warnings[0] and len(warnings[0]) < 500  # One line, not a traceback.
  assert train.evaluate_checkpoint(fault_config(), workdir)["psnr"] > 0
  assert json.load(open(os.path.join(workdir, "eval", "latest.json")))["step"] == 4
  assert checkpoint_steps(workdir) == [2, 4, 6]
  assert not os.path.exists(os.path.join(workdir, checkpointing.DAMAGED_DIR))
  # An explicitly requested damaged step is not silently replaced by another one.
  with pytest.raises(checkpointing.NoUsableCheckpointError, match="tried step 6: .*OUT_OF_RANGE"):
    inference.Colorizer.from_workdir(workdir, step=6)

  # The trainer moves step 6 aside (kept), resumes from 4 and writes a new, good step 6.
  caplog.clear()
  state = train.train_and_evaluate(fault_config(8), workdir)
  assert int(state.step) == 8
  messages = " | ".join(r.getMessage() for r in caplog.records)
  assert "moved damaged checkpoint step 6" in messages and "resuming from step 4" in messages
  assert checkpoint_steps(workdir) == [2, 4, 6, 8]
  assert os.listdir(os.path.join(workdir, checkpointing.DAMAGED_DIR)) == ["6"]
  assert inference.Colorizer.from_workdir(workdir).step == 8


def test_no_loadable_checkpoint_is_one_error_listing_every_step_and_moves_nothing(
    trained, tmp_path):
  workdir = copy_workdir(trained, tmp_path)
  for step in STEPS:
    truncate_data_files(workdir, step)
  manager = checkpointing.make_manager(workdir, 10)
  with pytest.raises(checkpointing.NoUsableCheckpointError) as error:
    checkpointing.restore_newest_loadable(manager, abstract_state(fault_config()),
                                          move_damaged=True)
  manager.close()
  message = str(error.value)
  assert "\n" not in message and "could be restored (tried step 6: " in message
  assert all(f"step {s}: " in message for s in STEPS), message
  assert checkpoint_steps(workdir) == list(STEPS)  # A failure common to all steps moves nothing.

  # The command line says the same in one line (TensorStore's threads may still print stray
  # "Event loop is closed" tracebacks of the abandoned reads before it).
  result = subprocess.run(
      [sys.executable, "-m", "colorjax.colorize", f"--workdir={workdir}", "--no_progress",
       os.path.join(REPO_ROOT, "colorjax", "static", "index.html"), "-o", str(tmp_path / "o")],
      cwd=REPO_ROOT, env=launch.cpu_env(1), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-3000:]
  assert error_line(result.stderr).startswith("error: no checkpoint in ")


def test_changed_model_lists_missing_unexpected_and_reshaped_keys(trained, tmp_path):
  workdir = copy_workdir(trained, tmp_path)
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
  assert checkpoint_steps(workdir) == list(STEPS)

  # --mode=eval with one level fewer: the checkpoint's extra level is unexpected.
  changed = fault_config()
  with changed.unlocked():
    changed.model.generator_kwargs.num_downs = 2
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"unexpected in the checkpoint \(.*ema/params/"):
    train.evaluate_checkpoint(changed, workdir)


def test_readers_restore_and_check_only_the_generator(trained, tmp_path):
  """Colorize, serve, export and compare read the generator's arrays alone (a partial
  restore): they get exactly the trainer's weights, and a changed discriminator, which stops
  the trainer's full restore, does not concern them."""
  workdir = copy_workdir(trained, tmp_path)
  manager = checkpointing.make_manager(workdir, 10, read_only=True)
  state, step = checkpointing.restore_newest_loadable(manager, abstract_state(fault_config()))
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
  changed = fault_config()
  with changed.unlocked():
    changed.model.discriminator_kwargs.features = 4
  with pytest.raises(checkpointing.CheckpointMismatchError, match=r"of another shape \(d/"):
    checkpointing.restore_newest_loadable(manager, abstract_state(changed))
  manager.close()
