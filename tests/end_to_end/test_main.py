"""`python -m colorjax.main` as a user runs it, in a subprocess: a mistyped override, the prior
mode. Mistakes of every command: tests/end_to_end/test_user_errors.py."""

import os
import subprocess
import sys

import numpy as np
import pytest

from colorjax.color import rebalance
from colorjax.training import prior as prior_lib
from tests.helpers import REPO_ROOT, tiny_config
from tests.helpers import launch

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).


def _main(*args, cwd=REPO_ROOT):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "colorjax.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_mistyped_override_fails_with_a_message(tmp_path):
  result = _main("--config=configs/lsgan.py", f"--workdir={tmp_path}", "--config.batch_sise=4")
  assert result.returncode != 0
  assert "batch_sise" in result.stderr


def test_mode_prior_writes_the_prior_the_trainer_reads(tmp_path):
  """`python -m colorjax.main --mode=prior` computes the prior alone, into the workdir."""
  workdir = str(tmp_path / "run")
  result = subprocess.run(
      [sys.executable, "-m", "colorjax.main", "--config=configs/colorful.py:tiny",
       f"--workdir={workdir}", "--mode=prior", "--config.color.prior_num_images=6"],
      cwd=REPO_ROOT, env=launch.cpu_env(1), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "wrote" in result.stderr and "Q=261 bins" in result.stderr
  written = rebalance.load_prior(os.path.join(workdir, prior_lib.PRIOR_FILENAME))
  config = tiny_config("colorful")
  with config.unlocked():
    config.color.prior_num_images = 6
  expected = prior_lib.compute_prior(config, progress=False)
  np.testing.assert_allclose(written.counts, expected.counts)
  np.testing.assert_allclose(written.weights, expected.weights, rtol=1e-6)
