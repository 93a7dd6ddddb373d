"""Writing the decoded chunks of `colorjax.data.prepare` as an ArrayRecord TFDS dataset
(`write_dataset`): the one step that needs TensorFlow and TFDS (the `tf` extra)."""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from colorjax.core import diskspace
from colorjax.core import tf_utils
from colorjax.data import images
from colorjax.data import splits
from colorjax.data.prepare_chunks import load_chunk, SPLITS, WORK_FOLDER

VERSION = "1.0.0"


def _split_examples(
    chunk_paths: Sequence[pathlib.Path], split: str, validation_percent: float, total: int,
    with_labels: bool, progress: bool,
) -> Iterator[tuple[str, dict[str, Any]]]:
  with tqdm(total=total, desc=f"writing {split}", unit="img", disable=not progress) as bar:
    for chunk_path in chunk_paths:
      for rel, encoded in load_chunk(chunk_path)["records"]:
        if splits.hash_split(rel, validation_percent) == split:
          bar.update(1)
          # Bytes go to tfds.features.Image unchanged: no second encode.
          example = {"image": encoded, "path": rel}
          if with_labels:
            example["label"] = images.folder_class(rel)  # ClassLabel encodes the name.
          yield rel, example


def _write_tfds(
    name: str, data_dir: pathlib.Path, chunk_paths: Sequence[pathlib.Path],
    counts: dict[str, int], validation_percent: float, classes: Sequence[str] | None,
    description: str, progress: bool, image_format: str = "png",
) -> None:
  """Writes the non-empty splits as an ArrayRecord TFDS dataset (with labels if `classes`)."""
  tf_utils.import_tensorflow("colorjax.prepare (writing a TFDS dataset)")  # TFDS writes with TF.
  tfds = tf_utils.import_tfds("colorjax.prepare (writing a TFDS dataset)")

  tfds.disable_progress_bar()  # Our own tqdm bars below say the same, once.
  features = tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8,
                                   encoding_format=image_format),
      "path": tfds.features.Text(),
      **({"label": tfds.features.ClassLabel(names=list(classes))} if classes else {}),
  })
  split_datasets = {
      split: _split_examples(chunk_paths, split, validation_percent, counts[split],
                             bool(classes), progress)
      for split in SPLITS if counts[split]  # TFDS refuses to write an empty split.
  }
  downloads = data_dir / "downloads"
  had_downloads = downloads.exists()
  tfds.dataset_builders.store_as_tfds_dataset(
      name=name, version=VERSION, features=features, split_datasets=split_datasets,
      data_dir=os.fspath(data_dir), description=description, file_format="array_record")
  if not had_downloads:
    # TFDS creates an (empty) download folder we never use; don't leave litter.
    shutil.rmtree(downloads, ignore_errors=True)


def write_dataset(
    name: str, data_dir: pathlib.Path, root: pathlib.Path, chunk_paths: Sequence[pathlib.Path],
    counts: dict[str, int], validation_percent: float, classes: Sequence[str] | None,
    replace: bool, progress: bool, image_format: str = "png",
) -> float:
  """Writes the dataset <data_dir>/<name>/VERSION from the decoded chunks; returns the seconds.

  `replace`: the folder holds an out-of-date dataset of ours, removed first.

  Raises:
    diskspace.DiskFullError: the disk filled up (the chunks are kept for a rerun).
  """
  dataset_dir = data_dir / name / VERSION
  if replace:
    shutil.rmtree(dataset_dir)  # Ours (it has a summary) and out of date.
  # A run killed while TFDS was writing leaves TFDS's temporary folders behind.
  for leftover in (data_dir / name).glob(f"incomplete.*_{VERSION}"):
    shutil.rmtree(leftover, ignore_errors=True)
  start = time.perf_counter()
  try:
    _write_tfds(name, data_dir, chunk_paths, counts, validation_percent, classes,
                f"Photos from {root}, prepared by colorjax.prepare.", progress, image_format)
  except Exception as e:  # pylint: disable=broad-except
    code = diskspace.errno_of(e)
    if code is None:
      raise
    # The records are the chunks' encoded bytes, so the dataset is about their size.
    needed = sum(path.stat().st_size for path in chunk_paths)
    work_dir = data_dir / WORK_FOLDER / name
    raise diskspace.DiskFullError(
        f"cannot write the dataset to {dataset_dir}: {diskspace.reason(code)}; it needs about "
        f"{diskspace.megabytes(needed)}, {diskspace.free_space(os.fspath(data_dir))}. Free "
        f"space and rerun: the decoded chunks in {work_dir} are kept and reused") from e
  return time.perf_counter() - start
