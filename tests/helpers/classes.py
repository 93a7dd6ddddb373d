"""A labelled dataset of real photos: a folder with one subfolder per class, each holding crops of
one scikit-image photo, already at the tiny configs' size (conftest's `class_root`). For the
image-level labels (tests/data/test_sources.py, tests/data/test_prepare.py) and Iizuka et al.'s
auxiliary classification loss (tests/test_train.py)."""

import pathlib

from PIL import Image
from skimage import data

from tests.helpers import tiny_config

SIZE = 16  # tiny_config's image size.
CROPS_PER_CLASS = 8
PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee}


def labelled_config(root: pathlib.Path, name: str = "fusion_attention", **loss):
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



def write_class_folder(root: pathlib.Path) -> pathlib.Path:
  """<root>/<class>/crop_<i>.png: CROPS_PER_CLASS SIZE x SIZE crops of each class's photo."""
  for name, load in PHOTOS.items():
    rgb = load()
    (root / name).mkdir()
    for i in range(CROPS_PER_CLASS):
      top, left = 40 + 29 * i, 30 + 31 * i
      crop = Image.fromarray(rgb[top:top + 120, left:left + 120]).resize((SIZE, SIZE),
                                                                         Image.LANCZOS)
      crop.save(root / name / f"crop_{i}.png")
  return root
