"""Preemption: SIGTERM stops cleanly with a checkpoint, SIGKILL loses only the unsaved steps.

One workdir goes through three real training processes (tiny lsgan config, 2 CPU devices):
  A. SIGTERM at a random step: exits 0, says so, with a complete checkpoint at the step it
     reached;
  B. the same command resumes from that step and gets SIGKILL at a random later point, if
     possible while Orbax is writing a checkpoint (a `*.orbax-checkpoint-tmp*` directory);
     only complete checkpoints may count, and each must restore;
  C. the same command resumes from the last complete checkpoint and finishes.
The per-step losses in the workdir's event files (a later value of a step wins: steps logged
by a killed run are logged again after the resume) must equal an uninterrupted run's.
"""

import os
import random
import re

import jax
import numpy as np
import pytest

from colorjax.core import checkpointing
from colorjax.core import distributed
from colorjax.training import run_setup
from tests.helpers import tiny_config
from tests.helpers import launch

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

NUM_STEPS = 24
TAGS = ("g_loss", "g_l1", "g_gan", "d_loss", "g_grad_norm")


def _config():
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = NUM_STEPS
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.max_checkpoints_to_keep = 100  # Keep all: each is checked for completeness.
    config.eval_every_steps = config.sample_every_steps = 1000
  return config


def _resumed_from(output: str) -> int:
  match = re.search(r"resumed from step (\d+)", output)
  assert match, f"no 'resumed from step' message in:\n{output[-3000:]}"
  return int(match.group(1))


def _checkpoint_dir_entries(workdir: str) -> tuple[list[int], list[str]]:
  """(complete steps, Orbax temporary directories) under <workdir>/checkpoints."""
  entries = os.listdir(os.path.join(workdir, "checkpoints"))
  temporary = [e for e in entries if "orbax-checkpoint-tmp" in e]
  steps = sorted(int(e) for e in entries if e.isdigit())
  unexpected = set(entries) - set(temporary) - {str(s) for s in steps}
  assert not unexpected, f"unexpected entries in the checkpoint directory: {unexpected}"
  return steps, temporary


def _restore_all(config, workdir: str, steps: list[int]) -> None:
  """Orbax restores every complete checkpoint, at the step it is named after."""
  mesh = distributed.make_data_mesh()
  setup = run_setup.RunSetup.create(config, mesh)
  abstract = checkpointing.abstract_with_shardings(setup.abstract_state, setup.state_shardings)
  manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep, read_only=True)
  assert list(manager.all_steps()) == steps, (manager.all_steps(), steps)
  for step in steps:
    state = checkpointing.restore(manager, step, abstract, None)
    assert int(state.step) == step
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.g.params))
  manager.close()


def test_sigterm_and_sigkill_resume_to_the_uninterrupted_losses(tmp_path):
  seed = random.SystemRandom().randrange(2**32)
  rng = random.Random(seed)
  context = f"(random seed {seed})"
  config = _config()
  config_path = launch.write_config_file(str(tmp_path / "tiny.py"), config)
  env = launch.cpu_env(2)
  workdir = str(tmp_path / "interrupted")
  args = [f"--config={config_path}", f"--workdir={workdir}"]

  # The uninterrupted run shares the 2 cores with run A.
  straight = launch.MainProcess([f"--config={config_path}",
                                       f"--workdir={tmp_path / 'straight'}"],
                                      env, str(tmp_path / "straight.log"))
  try:
    # A: SIGTERM at a random step.
    sigterm_step = rng.randint(3, 8)
    run_a = launch.MainProcess(args, env, str(tmp_path / "a.log"))
    try:
      run_a.wait_for(lambda: run_a.last_logged_step() >= sigterm_step, 600,
                     f"step {sigterm_step}")
      run_a.popen.terminate()
      assert run_a.wait(120) == 0, f"{context}\n{run_a.tail()}"
    finally:
      run_a.kill()
    message = re.search(r"SIGTERM received: saved a checkpoint at step (\d+)", run_a.output())
    assert message, f"{context} no stop message:\n{run_a.tail()}"
    stopped = int(message.group(1))
    assert sigterm_step <= stopped < NUM_STEPS, (context, sigterm_step, stopped)
    steps, temporary = _checkpoint_dir_entries(workdir)
    assert steps[-1] == stopped and not temporary, (context, steps, temporary)

    # B: resumes there; SIGKILL at a random later point, during a save if one is caught.
    run_b = launch.MainProcess(args, env, str(tmp_path / "b.log"))
    kill_after = stopped + rng.randint(1, 4)
    checkpoints = os.path.join(workdir, "checkpoints")
    saving = lambda: any("orbax-checkpoint-tmp" in e for e in os.listdir(checkpoints))
    try:
      run_b.wait_for(lambda: run_b.last_logged_step() >= kill_after, 600, f"step {kill_after}")
      run_b.wait_for(lambda: saving() or run_b.last_logged_step() >= kill_after + 3, 120,
                     "a save or 3 more steps")
      run_b.popen.kill()
    finally:
      run_b.kill()
    assert _resumed_from(run_b.output()) == stopped, context
    killed_in_save = saving()
    steps, temporary = _checkpoint_dir_entries(workdir)
    print(f"{context} SIGTERM asked at step {sigterm_step}, stopped at {stopped}; SIGKILL after "
          f"step {kill_after}, during a save: {killed_in_save}; complete checkpoints {steps}, "
          f"temporary {temporary}")
    assert steps[-1] >= stopped
    _restore_all(config, workdir, steps)

    # C: resumes from the last complete checkpoint and finishes.
    run_c = launch.run_main(args, env, str(tmp_path / "c.log"))
    assert _resumed_from(run_c.output()) == steps[-1], context
    assert straight.wait(600) == 0, straight.tail()
  finally:
    straight.kill()

  expected = launch.read_scalars(str(tmp_path / "straight"))
  got = launch.read_scalars(workdir)
  for tag in TAGS:
    assert sorted(got[tag]) == list(range(1, NUM_STEPS + 1)), (context, tag, sorted(got[tag]))
    for step in range(1, NUM_STEPS + 1):
      np.testing.assert_allclose(got[tag][step], expected[tag][step], rtol=1e-5,
                                 err_msg=f"{tag} at step {step} {context}")
