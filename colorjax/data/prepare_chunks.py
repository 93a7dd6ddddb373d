"""Scanning and decoding for `colorjax.data.prepare`: which files are under the source folder
(`list_files`), which chunks of them are decoded already (`plan_chunks`), the rest decoded in a
pool of processes (`decode_chunks`, one file at a time by `process_file`), and what the decoded
chunks hold (`count_chunks`).

Each chunk is saved to <data_dir>/.colorjax_prepare/<name>/ (`WORK_FOLDER`) under a hash of its
files (relative path, size, mtime) and `Options`, so a restarted run skips finished chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import pickle
import time
from collections import Counter
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from colorjax.core import diskspace
from colorjax.core import files
from colorjax.data import images
from colorjax.data import splits

WORK_FOLDER = ".colorjax_prepare"
SPLITS = ("train", "validation")

# Bump when the chunk contents change meaning, so stale work is not reused.
_CHUNK_FORMAT = 1

# (relative path, size in bytes, mtime in ns): what identifies a file's content for reuse.
FileEntry = tuple[str, int, int]


@dataclasses.dataclass(frozen=True)
class Options:
  """What decides the content of the prepared images (part of the chunk keys)."""
  max_side: int = 512
  min_side: int = images.DEFAULT_MIN_SIDE
  max_pixels: int = images.DEFAULT_MAX_PIXELS
  short_side: int = 0  # 0: no limit on the shorter side.
  image_format: str = "jpeg"  # prepare.IMAGE_FORMATS.
  jpeg_quality: int = 95
  jpeg_chroma: str = "444"  # prepare.JPEG_CHROMA.

  def key(self) -> dict[str, int | str]:
    """The options as chunk and source keys hold them: without `short_side` when it is off and
    without the format for PNG, so that datasets prepared before these options existed (PNG,
    no shorter side limit) stay up to date when prepared again with those values."""
    fields = dataclasses.asdict(self)
    if not self.short_side:
      del fields["short_side"]
    if self.image_format == "png":
      del fields["image_format"], fields["jpeg_quality"], fields["jpeg_chroma"]
    return fields


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
  """The chunks of a run: every chunk's file, and the tasks of those not decoded yet."""
  chunks: list[list[FileEntry]]
  paths: list[pathlib.Path]
  pending: list[tuple[str, str, list[str], Options]]  # `_process_chunk`'s tasks.

  @property
  def reused(self) -> int:
    return len(self.chunks) - len(self.pending)


@dataclasses.dataclass(frozen=True)
class ChunkCounts:
  """What the decoded chunks hold: images per split and the skipped files with their reasons."""
  written: dict[str, int]
  skipped: Counter
  skipped_files: list[dict[str, str]]


# ------------------------------------------------------------------------------------------
# One image, one chunk
# ------------------------------------------------------------------------------------------
def resize_to_max_side(rgb: np.ndarray, max_side: int, short_side: int = 0) -> np.ndarray:
  """Shrinks (never enlarges) so that the longer side is at most `max_side` and, when
  `short_side` is set, the shorter side at most `short_side`."""
  height, width = rgb.shape[:2]
  scale = max_side / max(height, width)
  if short_side:
    scale = min(scale, short_side / min(height, width))
  if scale >= 1:
    return rgb
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  # LANCZOS avoids aliasing when shrinking; reducing_gap first box-reduces
  # very large photos, which is much faster and visually identical.
  resized = Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
  return np.asarray(resized)


def process_file(path: pathlib.Path, options: Options) -> tuple[bytes | None, str, str]:
  """Decodes, filters and resizes one file.

  Returns:
    (encoded bytes, "", "") for a usable image, else (None, reason, detail) with
    reason one of ImageError's reasons, "grayscale" or "too small".
  """
  try:
    decoded = images.read_image(
        path, max_pixels=options.max_pixels, min_side=options.min_side)
  except images.ImageError as e:
    return None, e.reason, e.detail
  if decoded.is_grayscale:
    # Gray photos would teach the model that gray is a right answer.
    return None, "grayscale", f"grayscale (mode {decoded.mode})"
  rgb = images.composite_on_white(decoded.rgb, decoded.alpha)
  rgb = resize_to_max_side(rgb, options.max_side, options.short_side)
  if min(rgb.shape[:2]) < options.min_side:
    # Extreme panoramas: fine on disk, a sliver after shrinking.
    return None, "too small", (
        f"too small: {rgb.shape[1]}x{rgb.shape[0]} after resizing "
        f"(min_side={options.min_side})")
  if options.image_format == "jpeg":
    return images.encode_jpeg(rgb, options.jpeg_quality, options.jpeg_chroma), "", ""
  # compress_level 3 is ~3x faster than the default 6 for ~5% larger files.
  return images.encode_png(rgb, compress_level=3), "", ""


def _chunk_key(entries: Sequence[FileEntry], options: Options) -> str:
  payload = json.dumps(
      {"format": _CHUNK_FORMAT, "options": options.key(),
       "files": list(entries)}, sort_keys=True)
  return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def _process_chunk(task: tuple[str, str, list[str], Options]) -> int:
  """Pool worker: decodes one chunk of files and saves it atomically."""
  chunk_path, root, relpaths, options = task
  records, skipped = [], []
  for rel in relpaths:
    encoded, reason, detail = process_file(pathlib.Path(root) / rel, options)
    if encoded is None:
      skipped.append((rel, reason, detail))
    else:
      records.append((rel, encoded))
  payload = pickle.dumps({"records": records, "skipped": skipped},
                         protocol=pickle.HIGHEST_PROTOCOL)
  try:
    # A run killed mid-write leaves no half chunk to be reused, and a partial chunk is removed
    # (it would only take the space the next one needs).
    files.write_bytes(chunk_path, payload)
  except OSError as e:
    code = diskspace.errno_of(e)
    if code is None:
      raise
    # Raised in a pool worker: a plain message is what survives the trip to the parent.
    raise diskspace.DiskFullError(
        f"cannot write the decoded chunk {chunk_path}: {diskspace.reason(code)}; it needs "
        f"{diskspace.megabytes(len(payload))}, {diskspace.free_space(chunk_path)}. Free space "
        "(or use another --data_dir) and rerun: finished chunks are kept and reused") from None
  return len(relpaths)


def load_chunk(path: pathlib.Path) -> dict[str, list]:
  with open(path, "rb") as f:
    return pickle.load(f)


# ------------------------------------------------------------------------------------------
# The steps of a run
# ------------------------------------------------------------------------------------------
def list_files(root: pathlib.Path) -> list[FileEntry]:
  """Every image file under `root` as (relative path, size, mtime); ValueError if none."""
  entries = []
  for path in images.list_images(root):
    stat = os.stat(path)
    entries.append((images.relative_key(path, root), stat.st_size, stat.st_mtime_ns))
  if not entries:
    raise ValueError(f"no image files ({', '.join(images.IMAGE_EXTENSIONS)}) under {root}")
  return entries


def source_key(entries: Sequence[FileEntry], options: Options, validation_percent: float) -> str:
  """A hash of everything the dataset's content depends on: equal keys, equal datasets."""
  # "format" 2 added the labels: datasets written before are rewritten with them.
  return hashlib.sha1(json.dumps(
      {"chunk": _chunk_key(entries, options), "validation_percent": validation_percent,
       "format": 2}, sort_keys=True).encode("utf-8")).hexdigest()


def plan_chunks(root: pathlib.Path, entries: Sequence[FileEntry], options: Options,
                chunk_size: int, work_dir: pathlib.Path) -> ChunkPlan:
  """Cuts `entries` into chunks; those whose file exists in `work_dir` are done already."""
  # Chunk i always holds files [i*chunk_size, (i+1)*chunk_size) of the sorted
  # listing, so files appended at the end leave earlier chunks reusable.
  chunks = [list(entries[i:i + chunk_size]) for i in range(0, len(entries), chunk_size)]
  paths = [work_dir / f"{_chunk_key(chunk, options)}.pkl" for chunk in chunks]
  pending = [
      (os.fspath(path), os.fspath(root), [rel for rel, _, _ in chunk], options)
      for chunk, path in zip(chunks, paths) if not path.exists()]
  return ChunkPlan(chunks, paths, pending)


def decode_chunks(plan: ChunkPlan, workers: int, progress: bool) -> float:
  """Decodes the pending chunks (`workers` processes; 1: in this one); returns the seconds."""
  start = time.perf_counter()
  total = sum(len(chunk) for chunk in plan.chunks)
  done = total - sum(len(task[2]) for task in plan.pending)
  with tqdm(total=total, initial=done, desc="decoding", unit="img",
            disable=not progress) as bar:
    if workers == 1:
      for task in plan.pending:
        bar.update(_process_chunk(task))
    elif plan.pending:
      # spawn, not fork: the caller may have TensorFlow/JAX threads running,
      # and forking those can deadlock.
      with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for n in pool.imap_unordered(_process_chunk, plan.pending):
          bar.update(n)
  return time.perf_counter() - start


def count_chunks(chunk_paths: Sequence[pathlib.Path], validation_percent: float) -> ChunkCounts:
  """Images per split and the skipped files, from the decoded chunks."""
  written = {split: 0 for split in SPLITS}
  skipped, skipped_files = Counter(), []
  for chunk_path in chunk_paths:
    chunk = load_chunk(chunk_path)
    for rel, _ in chunk["records"]:
      written[splits.hash_split(rel, validation_percent)] += 1
    for rel, reason, detail in chunk["skipped"]:
      skipped[reason] += 1
      skipped_files.append({"path": rel, "reason": reason, "detail": detail})
  return ChunkCounts(written, skipped, skipped_files)
