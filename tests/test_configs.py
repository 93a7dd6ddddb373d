"""Every config trains on real photos; GAN-specific mechanics hold inside the real trainer."""

import glob
import os

import jax
import numpy as np
import pytest

from colorjax import train
from tests.helpers import REPO_ROOT, tiny_config
from tests.helpers.launch import read_scalars

CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(REPO_ROOT, "configs", "*.py")))


def _train(name, tmp_path, steps=3, **overrides):
  config = tiny_config(name)
  with config.unlocked():
    config.num_train_steps = steps
    config.checkpoint_every_steps = steps
    config.eval_every_steps = config.sample_every_steps = 1000  # Eval is tested elsewhere.
    config.color.prior_num_images = 6
    for key, value in overrides.items():
      config[key] = value
  return config, train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow  # Trains every config (~20-40 s each).
@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_three_steps_with_finite_logged_losses(name, tmp_path):
  config, state = _train(name, tmp_path)
  assert int(state.step) == 3
  scalars = read_scalars(str(tmp_path))
  expected = {"g_loss", "g_l1", "g_l2", "g_grad_norm", "images_per_sec"}
  if config.loss.gan != "none":
    expected |= {"g_gan", "d_loss", "d_gan", "d_grad_norm"}
  if config.loss.ce_weight > 0:
    expected |= {"g_ce"}
  if config.loss.gp_weight > 0:
    expected |= {"d_gp"}
  assert expected <= set(scalars), f"missing {sorted(expected - set(scalars))}"
  for tag in expected:
    assert all(np.isfinite(v) for v in scalars[tag].values()), tag


def test_every_config_file_has_a_docstring_with_its_command():
  for name in CONFIGS:
    source = open(os.path.join(REPO_ROOT, "configs", f"{name}.py")).read()
    assert f"--config=configs/{name}.py" in source, name


@pytest.mark.slow  # Trains (~24 s).
def test_wgan_critic_weights_stay_within_the_clip(tmp_path):
  _, state = _train("wgan", tmp_path)
  largest = max(float(np.abs(x).max()) for x in jax.tree.leaves(state.d.params))
  assert 0 < largest <= 0.01 + 1e-7


@pytest.mark.slow  # Trains (~29 s).
def test_n_critic_updates_the_critic_n_times_per_generator_update(tmp_path):
  config, state = _train("wgan_gp", tmp_path, steps=2)
  def adam_count(opt_state):
    return {int(x) for x in jax.tree.leaves(opt_state) if np.ndim(x) == 0}
  assert adam_count(state.g.opt_state) == {2}
  assert adam_count(state.d.opt_state) == {2 * config.loss.n_critic}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_has_each_variant(name):
  from tests.helpers import load_config
  default, cifar, quick = (load_config(name, v) for v in ("", "cifar", "quick"))
  assert cifar.data.image_size == 32 and cifar.eval_every_steps < cifar.num_train_steps
  assert quick.data.image_size == 32 and quick.num_train_steps < default.num_train_steps
  assert tiny_config(name).data.image_size == 16
  # A variant changes the budget and data, never the method.
  for config in (cifar, quick):
    assert (config.loss.to_dict(), config.model.generator) == (default.loss.to_dict(),
                                                                default.model.generator)


def test_unknown_variant_lists_the_valid_ones():
  from tests.helpers import load_config
  with pytest.raises(ValueError, match="'cifar', 'quick', 'tiny'"):
    load_config("lsgan", "cifr")


def test_variants_keep_their_eval_cadences():
  """Each variant's evaluators (colorjax/evals/) run as often as its eval_every_steps and
  sample_every_steps say; FID only once given weights."""
  from colorjax.evals import base
  from colorjax.evals import common
  from tests.helpers import load_config
  want = {"": (600, 200), "cifar": (250, 250), "quick": (300, 300), "tiny": (2, 2)}
  for variant, (metrics, samples) in want.items():
    config = load_config("lsgan", variant)
    cadences = {name: base.resolve_every(config, options, cls)
                for name, cls, options in common.check_config(config)}
    assert cadences == {"metrics": metrics, "samples": samples}, variant
