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

The steps, each a function: `prepare_chunks.list_files` (what is in `src`), `plan_chunks` (which
chunks of files are already decoded), `decode_chunks` (the rest, in a pool of `workers`
processes), `count_chunks` (what each split gets, what was skipped and why), then
`prepare_writer.write_dataset` (the TFDS metadata and ArrayRecord files), and `format_summary`
here (the report).

Work is resumable: decoding runs in chunks, each saved to <data_dir>/.colorjax_prepare/<name>/
under a hash of its files (relative path, size, mtime) and options. A restarted run skips
finished chunks; the work folder is removed once the dataset is written.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import time
from typing import Any

from colorjax.data import images
from colorjax.data import prepare_chunks
from colorjax.data import prepare_writer

SUMMARY_FILE = "prepare_summary.json"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

IMAGE_FORMATS = ("jpeg", "png")
JPEG_CHROMA = ("444", "420")


def suggested_short_side(image_size: int) -> int:
  """The stored shorter side for training at `image_size` px: 1.125x, so that the full-image
  crops (area fraction 1, the largest of the random resized crops) keep the training
  resolution with a little margin, as the 1.14x of ImageNet's "resize 256, crop 224"."""
  return math.ceil(image_size * 1.125)


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
  options = prepare_chunks.Options(max_side=max_side, min_side=min_side, short_side=short_side,
                    image_format=image_format, jpeg_quality=jpeg_quality,
                    jpeg_chroma=jpeg_chroma)

  entries = prepare_chunks.list_files(root)
  classes = images.folder_classes([rel for rel, _, _ in entries])
  key = prepare_chunks.source_key(entries, options, validation_percent)
  dataset_dir = data_dir / name / prepare_writer.VERSION
  previous = _existing_summary(dataset_dir)
  if previous is not None and previous.get("source_key") == key:
    if progress:
      print(f"{dataset_dir} is up to date with {root}; nothing to do.")
      print(format_summary(previous))
    return previous

  work_dir = data_dir / prepare_chunks.WORK_FOLDER / name
  work_dir.mkdir(parents=True, exist_ok=True)
  plan = prepare_chunks.plan_chunks(root, entries, options, chunk_size, work_dir)
  decode_seconds = prepare_chunks.decode_chunks(plan, workers, progress)
  counts = prepare_chunks.count_chunks(plan.paths, validation_percent)
  if not counts.written["train"]:
    raise ValueError(
        f"no usable training images in {root}: skipped {dict(counts.skipped)}; see the "
        f"decoded chunks in {work_dir}")
  notes = []
  if validation_percent > 0 and not counts.written["validation"]:
    notes.append(
        f"no file hashed into validation ({validation_percent}% of "
        f"{sum(counts.written.values())} images); the dataset has no validation split")
  write_seconds = prepare_writer.write_dataset(
      name, data_dir, root, plan.paths, counts.written, validation_percent, classes,
      previous is not None, progress, image_format)

  decoded_now = sum(len(task[2]) for task in plan.pending)
  summary = {
      "name": name,
      "version": prepare_writer.VERSION,
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
