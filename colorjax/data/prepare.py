"""Writing a folder of photos as a TFDS dataset (ArrayRecord): the library of `colorjax.prepare`.

`prepare(src, name, data_dir)` reads every image under `src` (nested folders, jpg/png/webp/bmp/
tiff/gif), decodes it with `images.read_image`, drops what cannot teach colour (unreadable files,
grayscale photos, tiny images), shrinks the rest so the longer side is at most `max_side` (and,
with `short_side`, the shorter side at most `short_side`: the size suited to the training
resolution, see `suggested_short_side`), and
writes `train` and `validation` splits (assigned by `splits.hash_split`, the same function the
folder data source uses). The result is read with

  tfds.data_source(name, split="train", data_dir=data_dir)

whose records are {"image": uint8 (H, W, 3), "path": bytes (relative path)}, plus "label" (a
ClassLabel named after the subfolders) when every photo sits in a first-level subfolder, one per
class, as the folder data source reads them.

Images are stored as JPEG (`image_format="jpeg"`, the default) at `jpeg_quality` 95 with 4:4:4
chroma: no chroma subsampling, so the a/b signal the model learns to predict keeps its full
resolution (4:2:0 would halve it), and training decodes them through the same crop-before-decode
path as JPEG folders (libjpeg's DCT scaling). ImageNet-sized photos stored at short_side 288
are 57 KB each, 43.6 dB PSNR from the resized photo (median; 41.9 at worst); `image_format=
"png"` stores the resized pixels exactly, 3.3x larger (188 KB) and slower to read
(benchmarks/README.md, input pipeline). Datasets of either format read alike.

The steps, each a function here: `list_files` (what is in `src`), `plan_chunks` (which chunks of
files are already decoded), `decode_chunks` (the rest, in a pool of `workers` processes),
`count_chunks` (what each split gets, what was skipped and why), `write_dataset` (the TFDS
metadata and ArrayRecord files), and `format_summary` (the report).

Work is resumable: decoding runs in chunks, each saved to <data_dir>/.colorjax_prepare/<name>/
under a hash of its files (relative path, size, mtime) and options. A restarted run skips
finished chunks; the work folder is removed once the dataset is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import pathlib
import pickle
import re
import shutil
import time
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from colorjax.core import diskspace
from colorjax.core import files
from colorjax.data import images
from colorjax.data import splits

VERSION = "1.0.0"
SUMMARY_FILE = "prepare_summary.json"
WORK_FOLDER = ".colorjax_prepare"
SPLITS = ("train", "validation")

# Bump when the chunk contents change meaning, so stale work is not reused.
_CHUNK_FORMAT = 1
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# (relative path, size in bytes, mtime in ns): what identifies a file's content for reuse.
FileEntry = tuple[str, int, int]


@dataclasses.dataclass(frozen=True)
class Options:
  """What decides the content of the prepared images (part of the chunk keys)."""
  max_side: int = 512
  min_side: int = images.DEFAULT_MIN_SIDE
  max_pixels: int = images.DEFAULT_MAX_PIXELS
  short_side: int = 0  # 0: no limit on the shorter side.
  image_format: str = "jpeg"  # IMAGE_FORMATS.
  jpeg_quality: int = 95
  jpeg_chroma: str = "444"  # JPEG_CHROMA.

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


IMAGE_FORMATS = ("jpeg", "png")
JPEG_CHROMA = ("444", "420")


def suggested_short_side(image_size: int) -> int:
  """The stored shorter side for training at `image_size` px: 1.125x, so that the full-image
  crops (area fraction 1, the largest of the random resized crops) keep the training
  resolution with a little margin, as the 1.14x of ImageNet's "resize 256, crop 224"."""
  return math.ceil(image_size * 1.125)


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
# Checks
# ------------------------------------------------------------------------------------------
def check_name(name: str) -> None:
  """Raises ValueError unless `name` is a valid (snake_case) TFDS dataset name."""
  if not _NAME_RE.match(name):
    raise ValueError(
        f"invalid dataset name {name!r}: TFDS names are snake_case, i.e. start "
        "with a lowercase letter followed by lowercase letters, digits or "
        f"underscores (e.g. {_suggest_name(name)!r})")


def _suggest_name(name: str) -> str:
  snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
  snake = re.sub(r"[^a-z0-9_]+", "_", snake).strip("_")
  if not snake or not snake[0].isalpha():
    snake = "photos_" + snake
  return snake


def check_arguments(name: str, max_side: int, min_side: int, validation_percent: float,
                    workers: int, chunk_size: int, short_side: int = 0,
                    image_format: str = "jpeg", jpeg_quality: int = 95,
                    jpeg_chroma: str = "444") -> None:
  """Raises ValueError naming the first argument of `prepare` that cannot work."""
  check_name(name)
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got "
                     f"{image_format!r}")
  if jpeg_chroma not in JPEG_CHROMA:
    raise ValueError(f"jpeg_chroma must be one of {', '.join(JPEG_CHROMA)}, got {jpeg_chroma!r}")
  if not 1 <= jpeg_quality <= 100:
    raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
  if not 1 <= min_side <= max_side:
    raise ValueError(f"need 1 <= min_side <= max_side, got {min_side=}, {max_side=}")
  if short_side and not min_side <= short_side <= max_side:
    raise ValueError(f"need min_side <= short_side <= max_side (or short_side=0, no limit), got "
                     f"{short_side=}, {min_side=}, {max_side=}")
  if not 0 <= validation_percent <= 100:
    raise ValueError(f"validation_percent must be in [0, 100], got {validation_percent}")
  if workers < 1 or chunk_size < 1:
    raise ValueError(f"workers and chunk_size must be >= 1, got {workers=}, {chunk_size=}")


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


def _load_chunk(path: pathlib.Path) -> dict[str, list]:
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
    chunk = _load_chunk(chunk_path)
    for rel, _ in chunk["records"]:
      written[splits.hash_split(rel, validation_percent)] += 1
    for rel, reason, detail in chunk["skipped"]:
      skipped[reason] += 1
      skipped_files.append({"path": rel, "reason": reason, "detail": detail})
  return ChunkCounts(written, skipped, skipped_files)


def _split_examples(
    chunk_paths: Sequence[pathlib.Path], split: str, validation_percent: float, total: int,
    with_labels: bool, progress: bool,
) -> Iterator[tuple[str, dict[str, Any]]]:
  with tqdm(total=total, desc=f"writing {split}", unit="img", disable=not progress) as bar:
    for chunk_path in chunk_paths:
      for rel, encoded in _load_chunk(chunk_path)["records"]:
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
  from colorjax.core import tf_utils  # Imported late: decoding workers never need TF.
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


def _existing_summary(dataset_dir: pathlib.Path) -> dict[str, Any] | None:
  """The summary of a dataset this command wrote before; errors on foreign ones."""
  if not dataset_dir.exists():
    return None
  summary_path = dataset_dir / SUMMARY_FILE
  if not summary_path.exists():
    raise FileExistsError(
        f"{dataset_dir} exists but was not written by colorjax.prepare; "
        "choose another --name or --data_dir, or delete it")
  return json.loads(summary_path.read_text())


def format_summary(summary: dict[str, Any]) -> str:
  """A few human readable lines about a prepare run."""
  lines = [
      f"dataset {summary['name']} at {summary['dataset_dir']}",
      f"  found {summary['found']} image files in {summary['src']}",
  ]
  if summary.get("classes"):
    names = summary["classes"]
    lines.append(f"  labels: {len(names)} classes from the subfolders ({', '.join(names[:5])}"
                 f"{', ...' if len(names) > 5 else ''})")
  for split, count in summary["written"].items():
    lines.append(f"  written {split}: {count}")
  for reason, count in sorted(summary["skipped"].items()):
    lines.append(f"  skipped ({reason}): {count}")
  lines.append(
      f"  chunks: {summary['chunks']['total']} ({summary['chunks']['reused']} reused "
      f"from an earlier run); {summary['seconds']['total']:.1f}s total, "
      f"{summary['images_per_second']:.0f} images/s decoding")
  for note in summary["notes"]:
    lines.append(f"  note: {note}")
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# The whole run
# ------------------------------------------------------------------------------------------
def prepare(
    src: str | os.PathLike,
    name: str,
    data_dir: str | os.PathLike,
    *,
    max_side: int = 512,
    short_side: int = 0,
    image_format: str = "jpeg",
    jpeg_quality: int = 95,
    jpeg_chroma: str = "444",
    validation_percent: float = 5.0,
    min_side: int = images.DEFAULT_MIN_SIDE,
    workers: int = 2,
    chunk_size: int = 128,
    keep_work: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
  """Prepares `src` into the TFDS dataset `name` under `data_dir`.

  Args:
    src: folder of photos (searched recursively, see `images.list_images`).
    name: TFDS dataset name (snake_case).
    data_dir: TFDS data dir; the dataset lands in <data_dir>/<name>/1.0.0.
    max_side: longer side of the stored images (smaller images are kept as is).
    short_side: when set, also the shorter side's limit: `suggested_short_side(image_size)`
      stores what training at `image_size` px reads, and no more pixels to decode.
    image_format: "jpeg" (4:4:4 chroma, `jpeg_quality`; the fastest to read) or "png"
      (lossless).
    jpeg_quality: libjpeg quality of the stored JPEGs.
    jpeg_chroma: "444" (full-resolution colour) or "420" (half, as cameras store it; faster
      to read).
    validation_percent: share of files (by `splits.hash_split`) in validation.
    min_side: images with a shorter side below this are skipped.
    workers: decoding processes; 1 decodes in this process.
    chunk_size: files per unit of resumable work.
    keep_work: keep the decoded chunks after writing (else deleted).
    progress: show progress bars.

  Returns:
    The summary (also printed and saved as <dataset dir>/prepare_summary.json).
  """
  start = time.perf_counter()
  check_arguments(name, max_side, min_side, validation_percent, workers, chunk_size,
                  short_side, image_format, jpeg_quality, jpeg_chroma)
  root = pathlib.Path(src).expanduser().resolve()
  data_dir = pathlib.Path(data_dir).expanduser().resolve()
  options = Options(max_side=max_side, min_side=min_side, short_side=short_side,
                    image_format=image_format, jpeg_quality=jpeg_quality,
                    jpeg_chroma=jpeg_chroma)

  entries = list_files(root)
  classes = images.folder_classes([rel for rel, _, _ in entries])
  key = source_key(entries, options, validation_percent)
  dataset_dir = data_dir / name / VERSION
  previous = _existing_summary(dataset_dir)
  if previous is not None and previous.get("source_key") == key:
    if progress:
      print(f"{dataset_dir} is up to date with {root}; nothing to do.")
      print(format_summary(previous))
    return previous

  work_dir = data_dir / WORK_FOLDER / name
  work_dir.mkdir(parents=True, exist_ok=True)
  plan = plan_chunks(root, entries, options, chunk_size, work_dir)
  decode_seconds = decode_chunks(plan, workers, progress)
  counts = count_chunks(plan.paths, validation_percent)
  if not counts.written["train"]:
    raise ValueError(
        f"no usable training images in {root}: skipped {dict(counts.skipped)}; see the "
        f"decoded chunks in {work_dir}")
  notes = []
  if validation_percent > 0 and not counts.written["validation"]:
    notes.append(
        f"no file hashed into validation ({validation_percent}% of "
        f"{sum(counts.written.values())} images); the dataset has no validation split")
  write_seconds = write_dataset(name, data_dir, root, plan.paths, counts.written,
                                validation_percent, classes, previous is not None, progress,
                                image_format)

  decoded_now = sum(len(task[2]) for task in plan.pending)
  summary = {
      "name": name,
      "version": VERSION,
      "src": os.fspath(root),
      "data_dir": os.fspath(data_dir),
      "dataset_dir": os.fspath(dataset_dir),
      "options": {**options.key(), "validation_percent": validation_percent,
                  "workers": workers, "chunk_size": chunk_size},
      "source_key": key,
      "found": len(entries),
      "classes": classes or [],
      "written": dict(counts.written),
      "skipped": dict(sorted(counts.skipped.items())),
      "chunks": {"total": len(plan.chunks), "reused": plan.reused},
      "seconds": {"decode": round(decode_seconds, 3), "write": round(write_seconds, 3),
                  "total": round(time.perf_counter() - start, 3)},
      "images_per_second": round(decoded_now / decode_seconds, 1) if decoded_now else 0.0,
      "notes": notes,
      "skipped_files": counts.skipped_files,
  }
  (dataset_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
  if not keep_work:
    shutil.rmtree(work_dir)
  if progress:
    print(format_summary(summary))
  return summary
