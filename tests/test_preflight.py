"""The checks before the first step: each problem a run would hit late is a UserError at once."""

import collections
import os

import pytest
import skimage.data
from PIL import Image

from colorjax.core.errors import UserError
from colorjax import preflight
from tests.helpers import tiny_config


def folder_of_photos(root, names) -> str:
  for name in names:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.chelsea()[:64, :64]).save(path)
  return str(root)


def config_with(name: str = "lsgan", **overrides):
  config = tiny_config(name)
  with config.unlocked():
    for key, value in overrides.items():
      node = config
      *parents, leaf = key.split(".")
      for parent in parents:
        node = node[parent]
      node[leaf] = value
  return config


def test_the_tiny_config_passes_and_creates_nothing(tmp_path):
  workdir = tmp_path / "run"
  preflight.check(config_with(), str(workdir))
  assert not workdir.exists()


def test_empty_eval_and_train_splits_say_how_to_fix_them(tmp_path):
  photos = folder_of_photos(tmp_path / "photos", ["a.png", "b.png"])
  with pytest.raises(UserError, match=r"'validation' split .* is empty .*validation_percent"):
    preflight.check(config_with(**{"data.name": photos, "data.validation_percent": 0.0}),
                    str(tmp_path / "run"))
  with pytest.raises(UserError, match=r"'train' split .* is empty .*lower"):
    preflight.check(config_with(**{"data.name": photos, "data.validation_percent": 100.0}),
                    str(tmp_path / "run"))


def test_labels_are_checked_when_the_classification_loss_needs_them(tmp_path):
  unlabelled = folder_of_photos(tmp_path / "flat", [f"p{i}.png" for i in range(12)])
  config = config_with("fusion_attention", **{"data.name": unlabelled, "loss.class_weight": 1.0,
                                              "data.validation_percent": 50.0})
  with pytest.raises(UserError, match="needs image-level labels"):
    preflight.check(config, str(tmp_path / "run"))
  labelled = folder_of_photos(tmp_path / "classes",
                              [f"{c}/p{i}.png" for c in ("cat", "dog", "owl") for i in range(4)])
  with config.unlocked():
    config.data.name = labelled
    config.model.generator_kwargs.num_classes = 5
  with pytest.raises(UserError, match="has 3 classes .*num_classes=3"):
    preflight.check(config, str(tmp_path / "run"))


def test_image_size_against_the_unet_depth(tmp_path):
  with pytest.raises(UserError, match="image_size=20: .*divisible by 8"):
    preflight.check(config_with(**{"data.image_size": 20}), str(tmp_path / "run"))


def test_batches_against_the_device_count(tmp_path):  # conftest: 8 simulated devices.
  with pytest.raises(UserError, match=r"batch_size=12 must be divisible .* \(8\)"):
    preflight.check(config_with(batch_size=12), str(tmp_path / "run"))
  with pytest.raises(UserError, match=r"eval.batch_size=4 must be divisible .* \(8\)"):
    preflight.check(config_with(**{"eval.batch_size": 4}), str(tmp_path / "run"))


def test_disk_space_for_one_checkpoint(tmp_path, monkeypatch):
  config = config_with()
  state = preflight.check_config(config).abstract_state
  from colorjax.core import checkpointing
  needed = checkpointing.state_nbytes(state)
  assert needed > 100_000  # The tiny U-Net + PatchGAN with Adam states: hundreds of KB.
  usage = collections.namedtuple("usage", "total used free")
  monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage(0, 0, needed // 2))
  workdir = tmp_path / "not" / "yet" / "made"
  with pytest.raises(UserError, match=r"a checkpoint needs about .* MB .* free"):
    preflight.check_disk_space(str(workdir), state)
  monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage(0, 0, needed * 2))
  preflight.check_disk_space(str(workdir), state)
  assert not os.path.exists(tmp_path / "not")


def test_missing_fid_weights(tmp_path):
  with pytest.raises(UserError, match="evals.fid.weights=.*does not exist.*"
                                     "colorjax.prepare --src=.* --fid_weights="):
    preflight.check(config_with(**{"evals.fid.weights": str(tmp_path / "inception.npz")}),
                    str(tmp_path / "run"))


def test_unknown_evaluator_type_lists_the_valid_ones(tmp_path):
  config = config_with()
  with config.unlocked():
    config.evals.metrics.type = "colourization"
  with pytest.raises(UserError, match="evals.metrics.type: .*'colourization'.*"
                                     "valid names: colorization, fid, hints, samples"):
    preflight.check(config, str(tmp_path / "run"))


def test_eval_needs_a_checkpoint(tmp_path):
  with pytest.raises(UserError, match="no checkpoint in .*train first"):
    preflight.check_eval(config_with(), str(tmp_path))
