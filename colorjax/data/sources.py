"""Random-access data sources, chosen by `config.data.name`.

Every source is a sequence of records `{"image": ...}` that the pipeline decodes to uint8 RGB:
a decoded array (embedded photos), a file path (a folder of the user's photos) or the encoded
bytes of a TFDS record (PNG or JPEG, as the dataset stores them). Sources
with image-level classes also give `"label"` (an int index into `class_names(source)`): TFDS
datasets with a `label` ClassLabel feature, and folders whose photos sit in one subfolder per
class. Only the auxiliary classification loss (`loss.class_weight`) reads labels.

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
import skimage.data

from colorjax.core import tf_utils
from colorjax.core.registry import Registry
from colorjax.data import images
from colorjax.data import splits


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

# Split names and the "image" feature checked against the TFDS builders (tensorflow-datasets
# 4.9: cifar10/100 have train/test; celeb_a, places365_small and imagenet2012 have
# train/validation/test, where imagenet2012's test split has no labels and needs a third tar).
# `how_to_get` says what TFDS downloads (or the user must), from where and how big; "{manual_dir}"
# is replaced by the folder TFDS reads manual downloads from.
_TFDS_PRESETS = [
    TfdsPreset("cifar10", SplitNames("train", "test"),
               "TFDS downloads it (163 MB, www.cs.toronto.edu/~kriz)"),
    TfdsPreset("cifar100", SplitNames("train", "test"),
               "TFDS downloads it (161 MB, www.cs.toronto.edu/~kriz)"),
    TfdsPreset("celeb_a", SplitNames("train", "validation"),
               "TFDS downloads it from Google Drive (1.5 GB; Drive's download quota often refuses "
               "it, then retry later, or put the img_align_celeba photos in a folder and use that)"),
    TfdsPreset("places365_small", SplitNames("train", "validation"),
               "TFDS downloads it (31 GB of tars from data.csail.mit.edu/places/places365: "
               "train_256_places365standard.tar 26 GB, test_256.tar 4.7 GB, val_256.tar 0.5 GB)"),
    TfdsPreset("imagenet2012", SplitNames("train", "validation"),
               "manual download: register at https://image-net.org/download-images, download "
               "ILSVRC2012_img_train.tar (148 GB) and ILSVRC2012_img_val.tar (6.7 GB) and put both "
               "in {manual_dir}"),
]
for _preset in _TFDS_PRESETS:
  DATASETS.register(_preset.name)(_preset)


class EmbeddedPhotos:
  """Real colour photos that ship with scikit-image: the offline default for demos and tests.

  Six photos (astronaut, cat, coffee, rocket, two motorcycles); both splits read all of them, so
  this source shows that training works end to end, not how well a model generalises.
  """
  def __init__(self):
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
  """Image files under a folder (nested), split into train/validation by a hash of each path,
  or, when the folder holds `train/` and `test/` (or `val/`, `validation/`), by those folders.

  The first-level subfolders (of the split folder) are the classes (as torchvision's
  ImageFolder and CIFAR-10's JPEG folders have it): `classes` lists them sorted, and each
  record's "label" indexes it. When some photos lie directly in the root, the folder has no
  classes (`classes` is None).
  """

  def __init__(self, root: str, split: str, validation_percent: float):
    split_root = splits.split_folder(root, split)
    if split_root is not None:
      root, validation_percent = split_root, (0.0 if split == "train" else 100.0)
    paths = images.list_images(root)
    if not paths:
      raise FileNotFoundError(
          f"no images ({', '.join(images.IMAGE_EXTENSIONS)}) found under {root!r}")
    keys = [images.relative_key(p, root) for p in paths]
    self.classes = images.folder_classes(keys)
    index = {name: i for i, name in enumerate(self.classes or [])}
    self._records = [(path, index.get(images.folder_class(key), -1))
                     for path, key in zip(paths, keys)
                     if splits.hash_split(key, validation_percent) == split]
    if not self._records:
      raise ValueError(f"the {split!r} split of {root!r} is empty "
                       f"({len(paths)} images, validation_percent={validation_percent})")

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path, label = self._records[index]
    return {"image": path, "label": label}


def class_names(source: Sequence[Any]) -> list[str] | None:
  """The image-level classes a source's "label" indexes, or None if it has none."""
  if isinstance(source, FolderSource):
    return source.classes
  info = getattr(source, "dataset_info", None)  # TFDS data sources carry their DatasetInfo.
  label = info.features["label"] if info is not None and "label" in info.features else None
  return list(label.names) if label is not None and hasattr(label, "names") else None


def _missing_dataset_message(name: str, split: str, searched: str, how_to_get: str | None,
                             error: Exception) -> str:
  """What to download, where to put it and how to prepare it, for a dataset TFDS cannot read."""
  lines = [f"dataset {name!r} (split {split!r}) is not prepared in ArrayRecord format under "
           f"data_dir={searched!r}."]
  if how_to_get is None:
    lines.append(f"  {name!r} is neither a registered name nor a folder, so it must be a dataset "
                 "written there by `python -m colorjax.prepare` (or by TFDS as ArrayRecord); "
                 "check --config.data.name and --config.data.data_dir.")
  else:
    manual_dir = os.path.join(searched, "downloads", "manual")
    # The Python API, not `tfds build`: the CLI of tensorflow-datasets 4.9 fails to start
    # without apache-beam installed; the API does not need it.
    build = (f"python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
             f"data_dir='{searched}').download_and_prepare(file_format='array_record')\"")
    lines += [f"  Download: {how_to_get.format(manual_dir=manual_dir)}.",
              f"  Prepare (writes {os.path.join(searched, name)}): {build}"]
  lines += [f"  Or train on a folder of your own photos with --config.data.name=/path/to/photos, "
            f"or convert the folder once with `python -m colorjax.prepare "
            f"--src=/path/to/photos --name=my_photos --data_dir={searched}` and use "
            f"--config.data.name=my_photos.",
            f"  Registered names: {', '.join(DATASETS.names())}.",
            f"  (TFDS said: {type(error).__name__}: {_abridged(str(error))})"]
  return "\n".join(lines)


def _abridged(text: str, head: int = 3, tail: int = 4) -> str:
  """TFDS's own error text without the middle (for an unknown name, its whole catalog)."""
  lines = [line for line in text.splitlines() if line.strip()]
  if len(lines) <= head + tail + 1:
    return "\n".join(lines)
  return "\n".join(lines[:head] + [f"\t[... {len(lines) - head - tail} lines ...]"]
                   + lines[-tail:])


def _tfds_source(name: str, split: str, data_dir: str | None,
                 how_to_get: str | None) -> Sequence[Any]:
  tfds = tf_utils.import_tfds(f"dataset {name!r} (not a folder: a TFDS name)")
  try:
    # The encoded image bytes, not TFDS's decoding: the pipeline decodes them itself (JPEGs at
    # the DCT scale the crop needs) at several times TFDS's per-record rate.
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
  except Exception as e:  # TFDS raises several types (DatasetNotFoundError, AssertionError, ...).
    searched = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    raise FileNotFoundError(_missing_dataset_message(name, split, searched, how_to_get, e)) from e


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
  name = os.path.expanduser(data_config.name)  # "~/photos", as a shell would read it.
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
  return _tfds_source(name, split, data_config.data_dir or None, how_to_get=None)
