"""Which split a photo of a folder dataset belongs to: the one train/validation policy.

The folder data source (`colorjax.data.sources`) splits a folder with a train/ subfolder and a
test/ (or val/, validation/) one by those (`split_folder`), any other folder by a stable hash of
each photo's path (`hash_split`). The dataset writer (`colorjax.data.prepare`) uses the same
`hash_split`, so a folder trained on directly and the same folder prepared as a TFDS dataset hold
out the same photos.
"""

from __future__ import annotations

import hashlib
import os

# Subfolders that hold a split of their own: a root with "train/" and one of these for eval
# (CIFAR-10 and most image-folder downloads: train/ and test/) is split by them, not by hash.
TRAIN_FOLDERS = ("train", "training")
EVAL_FOLDERS = ("validation", "val", "test")


def split_folder(root: str, split: str) -> str | None:
  """`root/<split folder>` when `root` holds both a train folder and an eval folder, else None."""
  present = lambda names: [n for n in names if os.path.isdir(os.path.join(root, n))]
  train, evals = present(TRAIN_FOLDERS), present(EVAL_FOLDERS)
  if not (train and evals):
    return None
  return os.path.join(root, train[0] if split == "train" else evals[0])


def hash_split(relative_path: str, validation_percent: float) -> str:
  """Assigns a file to "train" or "validation" from a stable hash of its path.

  sha1 (not Python's salted `hash()`) makes the assignment identical across
  runs, processes and machines, and independent of which other files exist:
  adding photos to a folder never moves old ones between splits. Separators
  are normalized to "/" so Windows and POSIX paths agree.

  Args:
    relative_path: the file's path relative to the dataset root
      (`images.relative_key`).
    validation_percent: share of files (0..100) that go to validation.

  Returns:
    "train" or "validation".
  """
  if not 0 <= validation_percent <= 100:
    raise ValueError(f"validation_percent must be in [0, 100], got {validation_percent}")
  key = relative_path.replace("\\", "/").encode("utf-8")
  bucket = int.from_bytes(hashlib.sha1(key).digest()[:8], "big") % 10_000
  return "validation" if bucket < validation_percent * 100 else "train"
