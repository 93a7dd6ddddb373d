"""Evaluators chosen by name from `config.evals`, each on its own cadence (colorjax/evals/common.py,
base.py)."""

import json
import os

import ml_collections
import pytest

from colorjax import train
from colorjax.evals import base
from colorjax.evals import common
from tests.helpers import tiny_config
from tests.helpers.launch import read_scalars


def test_unknown_evaluator_type_fails_listing_the_valid_types(tmp_path, tiny_lsgan_config):
  with tiny_lsgan_config.unlocked():
    tiny_lsgan_config.evals.lpips = ml_collections.ConfigDict({"type": "lpips", "every": 1})
  with pytest.raises(ValueError, match=r"evals\.lpips\.type: unknown evaluator type 'lpips'; "
                                       r"valid names: colorization, fid, hints, samples"):
    train.train_and_evaluate(tiny_lsgan_config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")  # Before the first step.


def test_cadences_default_to_the_top_level_keys(tiny_lsgan_config):
  config = tiny_lsgan_config
  with config.unlocked():
    config.eval_every_steps, config.sample_every_steps = 30, 10
    config.evals.fid.weights = ""  # Skipped: no weights.
    config.evals.extra = ml_collections.ConfigDict({"type": "colorization", "every": 7})
  entries = {name: base.resolve_every(config, options, cls)
             for name, cls, options in common.check_config(config)}
  assert entries == {"extra": 7, "metrics": 30, "samples": 10}
  with config.unlocked():
    config.evals.extra.every = -1
  with pytest.raises(ValueError, match=r"evals\.extra\.every must be a positive number"):
    common.check_config(config)


@pytest.mark.slow  # Trains.
def test_each_evaluator_runs_on_its_own_cadence_and_all_at_the_last_step(tmp_path):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = 3
    config.checkpoint_every_steps = 3
    config.eval_every_steps = 100  # The metrics' default cadence: only the last step.
    config.evals.samples.every = 1
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == [
      f"step_{step:08d}.png" for step in (1, 2, 3)]
  assert sorted(os.listdir(os.path.join(workdir, "eval"))) == ["latest.json",
                                                               "step_00000003.json"]
  assert sorted(read_scalars(workdir)["eval/psnr"]) == [3]
  record = json.load(open(os.path.join(workdir, "eval", "latest.json")))
  assert record["step"] == 3 and record["num_images"] == config.eval.num_images
