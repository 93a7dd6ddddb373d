"""Same config, seed and device count: two separate processes log identical losses."""

import pytest

from tests.helpers import launch
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

TAGS = ("g_loss", "g_l1", "g_gan", "d_loss", "d_gan", "g_grad_norm", "d_grad_norm",
        "g_param_norm")


def test_two_runs_with_the_same_seed_log_identical_losses(tmp_path):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = 4
    config.checkpoint_every_steps = 1000
    config.eval_every_steps = config.sample_every_steps = 1000
  config_path = launch.write_config_file(str(tmp_path / "tiny.py"), config)
  env = launch.cpu_env(2)
  runs = [launch.MainProcess([f"--config={config_path}", f"--workdir={tmp_path / name}"],
                                   env, str(tmp_path / f"{name}.log"))
          for name in ("first", "second")]
  try:
    codes = [run.wait(600) for run in runs]
  finally:
    for run in runs:
      run.kill()
  assert codes == [0, 0], "\n\n".join(run.tail() for run in runs)

  first = launch.read_scalars(str(tmp_path / "first"))
  second = launch.read_scalars(str(tmp_path / "second"))
  for tag in TAGS:
    assert sorted(first[tag]) == [1, 2, 3, 4], (tag, first[tag])
    assert first[tag] == second[tag], tag  # Bitwise: no tolerance.
  # Training moved: identical logs are not the same number logged four times.
  assert len(set(first["g_loss"].values())) == 4
