"""End-to-end trainer: one step, sharding, checkpoints, exact resume, eval and config errors."""

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import pytest
from PIL import Image
import skimage.data

from colorjax import train
from colorjax.training import run_setup
from colorjax.training import steps
from tests.helpers import REPO_ROOT, photo_batch, tiny_config
from tests.helpers.launch import read_scalars


def test_train_writes_checkpoints_events_samples_and_eval(tmp_path, tiny_lsgan_config):
  workdir = str(tmp_path)
  with tiny_lsgan_config.unlocked():
    # More than the 6 eval images: padding stays out.
    tiny_lsgan_config.evals.samples.num_samples = 8
  state = train.train_and_evaluate(tiny_lsgan_config, workdir)
  assert int(state.step) == 2
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
  grids = glob.glob(os.path.join(workdir, "samples", "step_*.png"))
  assert grids
  # One row per real eval image (6) of 16 px enlarged 8x with 2 px padding, under a 14 px
  # label row; 4 columns: gray input | averaged G | raw G | truth.
  assert np.asarray(Image.open(grids[0])).shape == (14 + 6 * 130 + 2, 4 * 130 + 2, 3)
  scalars = read_scalars(workdir)
  for tag in ("g_loss", "g_l1", "g_gan", "d_loss", "d_gan", "g_grad_norm", "d_grad_norm",
              "images_per_sec", "g_learning_rate", "eval/psnr", "eval/gray_psnr"):
    assert tag in scalars, f"{tag} missing from the event files: {sorted(scalars)}"
  record = json.load(open(os.path.join(workdir, "eval", "latest.json")))
  assert record["step"] == 2 and record["num_images"] == 6
  for key in ("psnr", "ssim", "ab_error", "colorfulness"):
    assert np.isfinite(record["model"][key]) and np.isfinite(record["gray_baseline"][key])
    assert np.isfinite(record["raw_generator"][key])  # Reported beside the averaged weights.


def _run_step_on(devices, config, batch):
  mesh = Mesh(np.array(devices), ("data",))
  setup = run_setup.RunSetup.create(config, mesh)
  state = setup.init_state()
  step = setup.train_step()
  for _ in range(2):
    state, metrics = step(state, {"image": jax.device_put(batch, NamedSharding(mesh, P("data")))})
  return jax.device_get(metrics), jax.device_get(state.g.params)


def test_eight_devices_match_one_device(tiny_lsgan_config):
  assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
  batch = photo_batch()
  metrics_1, params_1 = _run_step_on(jax.devices()[:1], tiny_lsgan_config, batch)
  metrics_8, params_8 = _run_step_on(jax.devices(), tiny_lsgan_config, batch)
  for key in metrics_1:
    np.testing.assert_allclose(metrics_8[key], metrics_1[key], rtol=2e-4, atol=1e-5, err_msg=key)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               params_1, params_8)


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = 4
    config.checkpoint_every_steps = 2
    config.eval_every_steps = config.sample_every_steps = 100
  straight = str(tmp_path / "straight")
  train.train_and_evaluate(config, straight)

  resumed = str(tmp_path / "resumed")
  with config.unlocked():
    config.num_train_steps = 2
  train.train_and_evaluate(config, resumed)  # "Stopped" after step 2.
  with config.unlocked():
    config.num_train_steps = 4
  state = train.train_and_evaluate(config, resumed)
  assert int(state.step) == 4

  expected, got = read_scalars(straight), read_scalars(resumed)
  for tag in ("g_loss", "d_loss", "g_l1"):
    for step in (1, 2, 3, 4):
      np.testing.assert_allclose(got[tag][step], expected[tag][step], rtol=1e-5, err_msg=tag)


def test_eval_mode_restores_and_writes_metrics_json(tmp_path, tiny_lsgan_config):
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_lsgan_config, workdir)
  os.remove(os.path.join(workdir, "eval", "latest.json"))
  results = train.evaluate_checkpoint(tiny_lsgan_config, workdir)
  record = json.load(open(os.path.join(workdir, "eval", "latest.json")))
  assert record["step"] == 2
  assert record["model"]["psnr"] == pytest.approx(results["psnr"])


def test_eval_reports_fid_with_user_supplied_inception_weights(tmp_path, tiny_lsgan_config):
  from colorjax.evals import inception
  weights = str(tmp_path / "inception.npz")
  inception.save_params(weights, inception.init_params(seed=0))  # Random weights, in the real file format.
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(tiny_lsgan_config, workdir)
  with tiny_lsgan_config.unlocked():
    tiny_lsgan_config.evals.fid.weights = weights
  train.evaluate_checkpoint(tiny_lsgan_config, workdir)
  record = json.load(open(os.path.join(workdir, "eval", "latest.json")))
  assert record["model"]["fid"] >= 0 and record["gray_baseline"]["fid"] > 0


def test_eval_without_checkpoint_says_so(tmp_path, tiny_lsgan_config):
  with pytest.raises(FileNotFoundError, match="train first"):
    train.evaluate_checkpoint(tiny_lsgan_config, str(tmp_path))


def _main(*args, cwd=REPO_ROOT):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "colorjax.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_mistyped_override_fails_with_a_message(tmp_path):
  result = _main("--config=configs/lsgan.py", f"--workdir={tmp_path}", "--config.batch_sise=4")
  assert result.returncode != 0
  assert "batch_sise" in result.stderr


def test_unknown_generator_lists_valid_names(tiny_lsgan_config):
  with tiny_lsgan_config.unlocked():
    tiny_lsgan_config.model.generator = "unet3000"
  with pytest.raises(ValueError, match="valid names: .*unet"):
    run_setup.validate_config(tiny_lsgan_config)


def test_missing_tfds_dataset_names_dataset_dir_and_folder_option(tmp_path, tiny_lsgan_config):
  pytest.importorskip("tensorflow_datasets", reason="the message is TFDS's (tfds extra)")
  with tiny_lsgan_config.unlocked():
    tiny_lsgan_config.data.name = "cifar10"
    tiny_lsgan_config.data.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError) as error:
    train.train_and_evaluate(tiny_lsgan_config, str(tmp_path / "w"))
  message = str(error.value)
  assert "cifar10" in message and str(tmp_path) in message and "folder" in message


def test_averaged_weights_forget_the_initialisation_at_any_run_length():
  """A fixed decay of 0.999 keeps 0.999^600 = 55% of the initial weights after 600 steps; the
  warm-up decay keeps well under 1% of them after a few hundred steps, and still averages."""
  for num_steps in (10, 100, 600, 5000):
    ema, params = {"w": jnp.zeros(())}, {"w": jnp.ones(())}  # Init 0, trained weights 1.
    for t in range(1, num_steps + 1):
      ema = steps.update_ema(0.999, jnp.asarray(t), ema, params)
    initial_share = 1.0 - float(ema["w"])
    assert initial_share < (0.35 if num_steps == 10 else 0.01), (num_steps, initial_share)
  assert float(steps.ema_decay_at(0.999, jnp.asarray(100000))) == pytest.approx(0.999)
  assert float(steps.ema_decay_at(0.999, jnp.asarray(90))) == pytest.approx(91 / 100)
