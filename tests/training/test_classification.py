"""The classification method end to end: prior, rebalanced CE, annealed-mean eval and samples."""

import json
import os

import numpy as np

from colorjax import train
from colorjax.color import rebalance
from colorjax.training import prior as prior_lib
from tests.helpers import tiny_config
from tests.helpers.launch import read_scalars


def test_colorful_trains_with_prior_and_reports_rebalanced_auc(tmp_path):
  config = tiny_config("colorful")
  with config.unlocked():
    config.num_train_steps = 12
    config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 12
    config.data.image_size = 32
    config.color.prior_num_images = 6
    config.optimizer.schedule = "constant"
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)

  prior = rebalance.load_prior(os.path.join(workdir, prior_lib.PRIOR_FILENAME))
  assert len(prior.bins) == 261
  np.testing.assert_allclose(float(np.sum(prior.prior * prior.weights)), 1.0, rtol=1e-4)
  peak = prior.bins[np.argmax(prior.prior)]
  assert np.hypot(*peak) <= 30, f"prior of real photos should peak near neutral, got {peak}"

  ce = read_scalars(workdir)["g_ce"]
  first, last = np.mean([ce[s] for s in (1, 2, 3)]), np.mean([ce[s] for s in (10, 11, 12)])
  assert last < first, f"cross-entropy did not fall: {first:.3f} -> {last:.3f}"

  record = json.load(open(os.path.join(workdir, "eval", "latest.json")))
  for key in ("psnr", "ssim", "auc", "auc_rebalanced", "colorfulness"):
    assert np.isfinite(record["model"][key]), key
  assert os.listdir(os.path.join(workdir, "samples"))


def test_prior_command_writes_a_prior_peaking_near_neutral(tmp_path):
  config = tiny_config("colorful")
  with config.unlocked():
    config.color.prior_num_images = 6
  prior = prior_lib.compute_prior(config, progress=False)
  assert prior.counts.sum() > 0
  assert np.hypot(*prior.bins[np.argmax(prior.prior)]) <= 30


def test_mode_prior_writes_the_prior_the_trainer_reads(tmp_path):
  """`python -m colorjax.main --mode=prior` computes the prior alone, into the workdir."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.helpers import REPO_ROOT  # pylint: disable=g-import-not-at-top
  from tests.helpers import launch  # pylint: disable=g-import-not-at-top
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
