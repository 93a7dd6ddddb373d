"""The trainer (colorjax/train.py) end to end in process: checkpoints, exact resume, eval, config
errors, a non-finite loss, and the auxiliary classification loss on labelled photos.

The jitted step itself (sharding, bfloat16, weight averaging): tests/training/test_steps.py; the
command line as a subprocess: tests/end_to_end/test_main.py.
"""

import glob
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image
from skimage import data

import colorjax
from colorjax import train
from colorjax.core import checkpointing
from colorjax.core import distributed
from colorjax.training import run_setup
from tests.helpers import tiny_config
from tests.helpers.classes import PHOTOS, labelled_config
from tests.helpers.launch import read_scalars


@pytest.mark.slow  # Trains (~26 s).
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


@pytest.mark.slow  # Trains three times (~74 s).
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


@pytest.mark.slow  # Trains (~30 s).
def test_eval_mode_restores_and_writes_metrics_json(tmp_path, tiny_lsgan_config):
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_lsgan_config, workdir)
  os.remove(os.path.join(workdir, "eval", "latest.json"))
  results = train.evaluate_checkpoint(tiny_lsgan_config, workdir)
  record = json.load(open(os.path.join(workdir, "eval", "latest.json")))
  assert record["step"] == 2
  assert record["model"]["psnr"] == pytest.approx(results["psnr"])


@pytest.mark.slow  # Trains (~35 s).
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


def test_missing_tfds_dataset_names_dataset_dir_and_folder_option(tmp_path, tiny_lsgan_config):
  pytest.importorskip("tensorflow_datasets", reason="the message is TFDS's (tfds extra)")
  with tiny_lsgan_config.unlocked():
    tiny_lsgan_config.data.name = "cifar10"
    tiny_lsgan_config.data.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError) as error:
    train.train_and_evaluate(tiny_lsgan_config, str(tmp_path / "w"))
  message = str(error.value)
  assert "cifar10" in message and str(tmp_path) in message and "folder" in message


@pytest.mark.slow  # Trains (~27 s).
def test_non_finite_loss_names_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path):
  # Warm-up from 0 makes step 1 a no-op update (finite, checkpointed); step 2 then uses a
  # learning rate of 5e29 and overflows. Step 1's save is still in flight when step 2 fails.
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = 6
    config.checkpoint_every_steps = 1
    config.eval_every_steps = config.sample_every_steps = 1000
    config.optimizer.learning_rate = 1e30
    config.optimizer.warmup_steps = 2
  workdir = str(tmp_path)
  with pytest.raises(train.NonFiniteLossError) as error:
    train.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert "at step 2" in message, message
  assert any(term in message for term in ("g_loss", "d_loss", "g_gan", "d_gan")), message

  # No checkpoint of the non-finite state; the one before it restores, finite.
  entries = os.listdir(os.path.join(workdir, "checkpoints"))
  assert entries == ["1"], entries
  mesh = distributed.make_data_mesh()
  setup = run_setup.RunSetup.create(config, mesh)
  manager = checkpointing.make_manager(workdir, 3, read_only=True)
  state = checkpointing.restore(manager, 1, checkpointing.abstract_with_shardings(
      setup.abstract_state, setup.state_shardings), None)
  assert int(state.step) == 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


# ------------------------------------------------------------------------------------------
# Image-level labels: Iizuka et al.'s auxiliary classification loss (conftest's class_root).
# ------------------------------------------------------------------------------------------
@pytest.mark.slow  # Trains 60 steps (~50 s).
def test_fusion_learns_the_classes_with_the_auxiliary_loss(class_root, tmp_path):
  config = labelled_config(class_root)
  with config.unlocked():
    config.num_train_steps = 60
    config.log_every_steps = 10
    config.checkpoint_every_steps = 60
    config.eval_every_steps = 60
    config.sample_every_steps = 60
    config.optimizer.learning_rate = 1e-3
    # The tiny net must tell three photos apart from 16 px crops of their L alone; weight 10
    # against 100 * L1 gets it there in 60 steps (CE 1.09 -> 0.49, accuracy 0.41 -> 0.82 here).
    config.loss.class_weight = 10.0
  state = train.train_and_evaluate(config, str(tmp_path))  # 8 devices: labels sharded too.
  assert int(state.step) == 60

  scalars = read_scalars(str(tmp_path))
  ce = [scalars["g_class"][step] for step in sorted(scalars["g_class"])]
  accuracy = [scalars["g_class_accuracy"][step] for step in sorted(scalars["g_class_accuracy"])]
  assert ce[0] > 0.9  # Chance is ln 3 = 1.10.
  assert ce[-1] < 0.75 * ce[0], ce
  assert accuracy[-1] > 0.6, accuracy  # Chance is 1/3.
  assert "eval/psnr" in scalars

  # The classifier is part of the saved model: colorize rebuilds it from config.json.
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["model"]["generator_kwargs"]["num_classes"] == len(PHOTOS)
  colour = colorjax.Colorizer.from_workdir(str(tmp_path))(data.coffee())
  assert colour.shape == data.coffee().shape


def test_class_loss_without_labels_or_with_the_wrong_head_says_what_to_set(class_root, tmp_path):
  unlabelled = labelled_config(class_root)
  with unlabelled.unlocked():
    unlabelled.data.name = "skimage_photos"
  with pytest.raises(ValueError, match="has none.*subfolder per class"):
    train.train_and_evaluate(unlabelled, str(tmp_path / "unlabelled"))

  wrong_size = labelled_config(class_root)
  with wrong_size.unlocked():
    wrong_size.model.generator_kwargs.num_classes = 10
  with pytest.raises(ValueError, match="has 3 classes.*generator_kwargs.num_classes=3"):
    train.train_and_evaluate(wrong_size, str(tmp_path / "wrong_size"))

  no_classifier = labelled_config(class_root, name="lsgan")  # The U-Net has no global branch.
  with pytest.raises(ValueError, match="image-level classifier.*fusion_attention"):
    train.train_and_evaluate(no_classifier, str(tmp_path / "unet"))
  assert not os.path.exists(tmp_path / "unet" / "checkpoints")
