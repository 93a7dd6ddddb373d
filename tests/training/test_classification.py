"""Classification colorizers in the trainer (colorjax/training/classification.py), end to end: the
prior, rebalanced CE, annealed-mean eval and samples. The prior alone: tests/training/test_prior.py;
`--mode=prior` as a command: tests/end_to_end/test_main.py."""

import json
import os

import numpy as np
import pytest

from colorjax import train
from colorjax.color import rebalance
from colorjax.training import prior as prior_lib
from tests.helpers import tiny_config
from tests.helpers.launch import read_scalars


@pytest.mark.slow  # Trains (~27 s).
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
