"""Image-level labels and Iizuka et al.'s auxiliary classification loss, on real photos.

The labelled dataset is a folder with one subfolder per class, each holding crops of one
scikit-image photo. The crops are already at the model's size and the tests that trace an output
back to its file use `min_crop_scale=1` without flips, so each output image is exactly one file.
"""

import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image
from skimage import data

import colorjax
from colorjax import train
from colorjax.data import images
from colorjax.data import pipeline, prepare, sources
from tests.helpers import tiny_config
from tests.helpers.launch import read_scalars

SIZE = 16  # tiny_config's image size.
CROPS_PER_CLASS = 8
PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee}


@pytest.fixture(scope="module")
def class_root(tmp_path_factory) -> pathlib.Path:
  """<root>/<class>/crop_<i>.png: CROPS_PER_CLASS SIZE x SIZE crops of each class's photo."""
  root = tmp_path_factory.mktemp("classes")
  for name, load in PHOTOS.items():
    rgb = load()
    (root / name).mkdir()
    for i in range(CROPS_PER_CLASS):
      top, left = 40 + 29 * i, 30 + 31 * i
      crop = Image.fromarray(rgb[top:top + 120, left:left + 120]).resize((SIZE, SIZE),
                                                                         Image.LANCZOS)
      crop.save(root / name / f"crop_{i}.png")
  return root


def _labelled_config(root: pathlib.Path, name: str = "fusion_attention", **loss):
  config = tiny_config(name)
  with config.unlocked():
    config.data.name = str(root)
    config.data.validation_percent = 0.0
    config.data.eval_split = "train"
    config.loss.class_weight = 1.0
    if name == "fusion_attention":
      config.model.generator_kwargs.num_classes = len(PHOTOS)
    config.loss.update(loss)
  return config


def test_folder_subfolders_are_the_classes_and_label_every_batch_row(class_root):
  config = _labelled_config(class_root)
  with config.unlocked():
    config.data.min_crop_scale = 1.0  # Identity crops: every output is exactly one file.
    config.data.random_flip = False
  source = sources.create_source(config.data, train=True)
  assert sources.class_names(source) == sorted(PHOTOS)
  class_of = {}
  for path in images.list_images(class_root):
    rgb = np.asarray(Image.open(path).convert("RGB"))
    class_of[rgb.tobytes()] = images.folder_class(images.relative_key(path, class_root))

  it = iter(pipeline.create_train_dataset(config))
  seen = set()
  for _ in range(6):  # Two epochs of the 24 crops.
    batch = next(it)
    assert batch["image"].shape == (8, SIZE, SIZE, 3) and batch["label"].dtype == np.int32
    for image, label in zip(batch["image"], batch["label"]):
      assert sorted(PHOTOS)[label] == class_of[image.tobytes()]
      seen.add(image.tobytes())
  assert len(seen) == len(PHOTOS) * CROPS_PER_CLASS


def test_prepare_stores_the_folder_classes_as_tfds_labels(class_root, tmp_path):
  pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")
  summary = prepare.prepare(class_root, "class_photos", tmp_path, max_side=64,
                            validation_percent=0.0, min_side=8, workers=1, progress=False)
  assert summary["classes"] == sorted(PHOTOS)
  config = _labelled_config(class_root)
  with config.unlocked():
    config.data.name, config.data.data_dir = "class_photos", str(tmp_path)
  source = sources.create_source(config.data, train=True)
  assert sources.class_names(source) == sorted(PHOTOS)
  assert len(source) == len(PHOTOS) * CROPS_PER_CLASS
  for i in range(len(source)):
    record = source[i]
    assert sorted(PHOTOS)[record["label"]] == images.folder_class(record["path"].decode())
  batch = next(iter(pipeline.create_train_dataset(config)))
  assert set(np.unique(batch["label"])) <= set(range(len(PHOTOS)))


def test_fusion_learns_the_classes_with_the_auxiliary_loss(class_root, tmp_path):
  config = _labelled_config(class_root)
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
  unlabelled = _labelled_config(class_root)
  with unlabelled.unlocked():
    unlabelled.data.name = "skimage_photos"
  with pytest.raises(ValueError, match="has none.*subfolder per class"):
    train.train_and_evaluate(unlabelled, str(tmp_path / "unlabelled"))

  wrong_size = _labelled_config(class_root)
  with wrong_size.unlocked():
    wrong_size.model.generator_kwargs.num_classes = 10
  with pytest.raises(ValueError, match="has 3 classes.*generator_kwargs.num_classes=3"):
    train.train_and_evaluate(wrong_size, str(tmp_path / "wrong_size"))

  no_classifier = _labelled_config(class_root, name="lsgan")  # The U-Net has no global branch.
  with pytest.raises(ValueError, match="image-level classifier.*fusion_attention"):
    train.train_and_evaluate(no_classifier, str(tmp_path / "unet"))
  assert not os.path.exists(tmp_path / "unet" / "checkpoints")
