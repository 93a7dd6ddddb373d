"""Random-access data sources, chosen by `config.data.name`.

Every source is a sequence of records `{"image": ...}` that the pipeline decodes to uint8 RGB:
a decoded array (TFDS, embedded photos) or a file path (a folder of the user's photos).

`config.data.name` is resolved in this order:
  1. a registered name: the embedded photos (`skimage_photos`) or a TFDS preset (`cifar10`, ...);
  2. a path to a directory: the user's own photos, read directly (split by a hash of each path);
  3. any other name: a TFDS dataset already prepared in ArrayRecord format under `data.data_dir`,
     e.g. one written by `python -m colorjax.prepare`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import numpy as np

from colorjax import images
from colorjax.registry import Registry


@dataclasses.dataclass(frozen=True)
class SplitNames:
  train: str
  eval: str


@dataclasses.dataclass(frozen=True)
class TfdsPreset:
  """A TFDS dataset by name: which splits to train and evaluate on and how to obtain it."""
  name: str
  splits: SplitNames
  how_to_get: str


DATASETS: Registry[Callable[..., Sequence[Any]] | TfdsPreset] = Registry("dataset")

_TFDS_PRESETS = [
    TfdsPreset("cifar10", SplitNames("train", "test"), "downloaded automatically by TFDS"),
    TfdsPreset("cifar100", SplitNames("train", "test"), "downloaded automatically by TFDS"),
    TfdsPreset("celeb_a", SplitNames("train", "validation"),
               "downloaded by TFDS from Google Drive (may need a manual download, see TFDS docs)"),
    TfdsPreset("places365_small", SplitNames("train", "validation"),
               "downloaded automatically by TFDS (~30 GB)"),
    TfdsPreset("imagenet2012", SplitNames("train", "validation"),
               "manual download: put ILSVRC2012_img_{train,val}.tar in <data_dir>/downloads/manual"),
]
for _preset in _TFDS_PRESETS:
  DATASETS.register(_preset.name)(_preset)


class EmbeddedPhotos:
  """Real colour photos that ship with scikit-image: the offline default for demos and tests.

  Six photos (astronaut, cat, coffee, rocket, two motorcycles); both splits read all of them, so
  this source shows that training works end to end, not how well a model generalises.
  """
  def __init__(self):
    import skimage.data  # Imported here so that other sources do not pay for it.
    left, right, _ = skimage.data.stereo_motorcycle()
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
              skimage.data.rocket(), left, right]
    self._images = [np.ascontiguousarray(p[..., :3]) for p in photos]

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self._images[index]}


DATASETS.register("skimage_photos")(lambda split: EmbeddedPhotos())


class FolderSource:
  """Image files under a folder (nested), split into train/validation by a hash of each path."""

  def __init__(self, root: str, split: str, validation_percent: float):
    paths = images.list_images(root)
    if not paths:
      raise FileNotFoundError(
          f"no images ({', '.join(images.IMAGE_EXTENSIONS)}) found under {root!r}")
    self._paths = [p for p in paths
                   if images.hash_split(os.path.relpath(p, root), validation_percent) == split]
    if not self._paths:
      raise ValueError(f"the {split!r} split of {root!r} is empty "
                       f"({len(paths)} images, validation_percent={validation_percent})")

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self._paths[index]}


def _tfds_source(name: str, split: str, data_dir: str | None, how_to_get: str) -> Sequence[Any]:
  import tensorflow_datasets as tfds  # Imports TF: keep it lazy and keep TF off the GPU.
  from colorjax import tf_utils
  tf_utils.hide_tf_from_accelerators()
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises several types (DatasetNotFoundError, AssertionError, ...).
    searched = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    raise FileNotFoundError(
        f"dataset {name!r} (split {split!r}) is not prepared in ArrayRecord format under "
        f"data_dir={searched!r}: {type(e).__name__}: {e}\n"
        f"How to get it: {how_to_get}; prepare it with `tfds build {name} --data_dir={searched} "
        f"--file_format=array_record` (needs network), or train on a folder of your own photos "
        f"with --config.data.name=/path/to/photos (or convert the folder once with "
        f"`python -m colorjax.prepare --src=/path/to/photos --name=my_photos "
        f"--data_dir={searched}`). Registered names: {', '.join(DATASETS.names())}.") from e


def resolve_split(data_config: Any, train: bool) -> str:
  """The split name to read: the config's override or the dataset's default."""
  override = data_config.train_split if train else data_config.eval_split
  if override:
    return override
  entry = DATASETS.get(data_config.name) if data_config.name in DATASETS else None
  if isinstance(entry, TfdsPreset):
    return entry.splits.train if train else entry.splits.eval
  return "train" if train else "validation"


def create_source(data_config: Any, *, train: bool) -> Sequence[Any]:
  """The random-access source for the train or eval split named by `data_config`."""
  name = data_config.name
  split = resolve_split(data_config, train)
  if name in DATASETS:
    entry = DATASETS.get(name)
    if isinstance(entry, TfdsPreset):
      return _tfds_source(name, split, data_config.data_dir or None, entry.how_to_get)
    return entry(split)
  if os.sep in name or os.path.isdir(name):
    if not os.path.isdir(name):
      raise FileNotFoundError(f"data.name {name!r} looks like a folder but does not exist")
    return FolderSource(name, split, data_config.validation_percent)
  return _tfds_source(name, split, data_config.data_dir or None,
                      "a dataset you prepared yourself (python -m colorjax.prepare)")
