"""The colour prior of the training data (colorjax/training/prior.py), computed from the tiny
colorful config's photos. Written by `--mode=prior` as a command: tests/end_to_end/test_main.py;
read by the trainer: tests/training/test_classification.py."""

import numpy as np

from colorjax.training import prior as prior_lib
from tests.helpers import tiny_config


def test_prior_command_writes_a_prior_peaking_near_neutral(tmp_path):
  config = tiny_config("colorful")
  with config.unlocked():
    config.color.prior_num_images = 6
  prior = prior_lib.compute_prior(config, progress=False)
  assert prior.counts.sum() > 0
  assert np.hypot(*prior.bins[np.argmax(prior.prior)]) <= 30
