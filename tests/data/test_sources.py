"""Data sources (colorjax/data/sources.py): a folder with one subfolder per class labels every
image, on real photos (conftest's `class_root`).

The crops are already at the model's size and the tests that trace an output back to its file use
`min_crop_scale=1` without flips, so each output image is exactly one file. Prepared as TFDS:
tests/data/test_prepare.py; the auxiliary classification loss: tests/test_train.py. The folder
and TFDS sources of unlabelled photos: tests/data/test_pipeline.py.
"""

import numpy as np
from PIL import Image

from colorjax.data import images
from colorjax.data import pipeline, sources
from tests.helpers.classes import CROPS_PER_CLASS, PHOTOS, SIZE, labelled_config


def test_folder_subfolders_are_the_classes_and_label_every_batch_row(class_root):
  config = labelled_config(class_root)
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
