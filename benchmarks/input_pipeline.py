"""The train input path per core, side by side in one run: colorjax, plain PIL and tf.data.

Files (written once from scikit-image's colour photos, random crops resized, JPEG quality 90):
  * imagenet: --num_imagenet JPEGs with the shorter side 333-375 px (ImageNet's typical size);
  * large:    --num_large JPEGs with the longer side 512-1024 px.

Sections, each alternating its contenders round by round (--rounds) so that a load change on a
shared machine hits all of them alike; every rate is images per CPU-second of this process
(`time.process_time`: all its threads), i.e. per core, unless it says wall:
  1. per_core: one process, one thread; every file once per round, random resized crops to
     --size px (area 0.35-1, aspect 3/4-4/3, flip):
       colorjax: `pipeline.TrainTransform.random_map` on the file's path;
       pil:      PIL alone: open, `draft` to the crop's scale, crop, bilinear resize;
       tf:       tf.data: read_file, `sample_distorted_bounding_box`, `decode_and_crop_jpeg`,
                 bilinear `resize`, uint8, random flip; inter/intra-op and tf.data threads 1
                 (only when TensorFlow is installed).
  2. workers: `pipeline.create_train_dataset` on the folders with 0/1/2 grain worker processes
     (--workers), one read thread each, wall images/s after the first batch.
  3. prepared: the same folder as read directly and as prepared by `colorjax.prepare` at
     --prepared_side (ArrayRecord) in each of --prepared_formats (FORMAT[:QUALITY[:CHROMA]]:
     JPEG 95 and 90 with 4:4:4 chroma, 95 with 4:2:0, PNG), through
     `create_train_dataset`, 0 workers, one thread; plus --num_cifar CIFAR-10 train JPEGs
     (--cifar_dir, skipped when absent); with the stored size per image and, for JPEG, the
     PSNR of the stored image against the resized photo.
  decoders: full-frame decodes alone, one thread: PIL, OpenCV's imdecode, simplejpeg (the
     decoder the colorjax path uses), to show what the choice of decoder is worth.
  4. gpu: the cores per GPU a 256 px pix2pix run needs: the H100's images/s at --mfu of its
     dense bf16 peak for --gflop_per_image train GFLOP, over the colorjax per-core rate.
With --gray_check N: also how the grayscale test on a ~64 px sample decides on N CIFAR-10 test
photos upscaled to 384 px (JPEG 90) against the full-resolution rule it replaced.

Usage (about 8 minutes on 2 shared cores):
  python benchmarks/input_pipeline.py [--sections decoders per_core workers prepared gpu]
      [--rounds 3]
      [--size 256] [--workers 0 1 2] [--gray_check 10000]
"""

from __future__ import annotations

import argparse
import datetime
import io
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from colorjax.core import config_base  # noqa: E402
from colorjax.data import images  # noqa: E402
from colorjax.data import pipeline  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CIFAR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "cifar10")
MIN_SCALE = 0.35  # config_base's data.min_crop_scale.
# H100 SXM dense bf16 peak, TFLOP/s (NVIDIA's datasheet gives 1979 with 2:4 sparsity).
H100_BF16_TFLOPS = 989.0


def _parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sections", nargs="+",
                      default=["decoders", "per_core", "workers", "prepared", "gpu"])
  parser.add_argument("--sets", nargs="+", default=["imagenet", "large"])
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--batches", type=int, default=12, help="batches timed per worker cell")
  parser.add_argument("--num_imagenet", type=int, default=100)
  parser.add_argument("--num_large", type=int, default=120)
  parser.add_argument("--image_dir", default=os.path.join(tempfile.gettempdir(),
                                                          "colorjax_bench_jpegs"))
  parser.add_argument("--prepared_side", type=int, default=288,
                      help="shorter side of the prepared images (prepare --short_side)")
  parser.add_argument("--prepared_formats", nargs="+",
                      default=["jpeg:95:444", "jpeg:90:444", "jpeg:95:420", "png"],
                      help="FORMAT[:QUALITY[:CHROMA]]: prepare's --image_format, --jpeg_quality "
                      "and --jpeg_chroma of each prepared dataset")
  parser.add_argument("--cifar_dir", default=DEFAULT_CIFAR)
  parser.add_argument("--num_cifar", type=int, default=2000)
  parser.add_argument("--mfu", type=float, default=0.4)
  parser.add_argument("--gflop_per_image", type=float, default=86.0,
                      help="train GFLOP per 256 px image of pix2pix (U-Net-256 + PatchGAN)")
  parser.add_argument("--gray_check", type=int, default=0,
                      help="CIFAR-10 test photos for the grayscale-rule comparison (0: none)")
  return parser.parse_args()


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------
def _photos() -> list[np.ndarray]:
  from skimage import data  # pylint: disable=g-import-not-at-top
  left, _, _ = data.stereo_motorcycle()
  return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), left,
          data.immunohistochemistry(), data.hubble_deep_field(), data.retina()]


def make_jpegs(folder: str, count: int, side_range: tuple[int, int], shorter: bool) -> list[str]:
  """`count` JPEGs (quality 90): random crops (60-100% a side) of scikit-image's colour photos,
  resized so that the shorter (or longer) side is uniform in `side_range`; upsampled where a
  photo is smaller (the decode cost depends on pixels, not content)."""
  paths = [os.path.join(folder, f"photo_{k:04d}.jpg") for k in range(count)]
  if all(os.path.isfile(p) for p in paths):
    return paths
  os.makedirs(folder, exist_ok=True)
  photos, rng = _photos(), np.random.default_rng(0)
  for k, path in enumerate(paths):
    photo = photos[k % len(photos)]
    height, width = photo.shape[:2]
    crop_h, crop_w = int(height * rng.uniform(0.6, 1)), int(width * rng.uniform(0.6, 1))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = Image.fromarray(photo[top:top + crop_h, left:left + crop_w])
    scale = rng.uniform(*side_range) / (min if shorter else max)(crop_h, crop_w)
    crop = crop.resize((round(crop_w * scale), round(crop_h * scale)), Image.BICUBIC)
    crop.save(path, quality=90)
  return paths


def image_sets(args: argparse.Namespace) -> dict[str, list[str]]:
  specs = {"imagenet": (args.num_imagenet, (333, 375), True),
           "large": (args.num_large, (512, 1024), False)}
  return {name: make_jpegs(os.path.join(args.image_dir, name), *specs[name])
          for name in args.sets}


# ------------------------------------------------------------------------------------------
# 1. Per core: the three paths on the same files
# ------------------------------------------------------------------------------------------
def colorjax_path(paths: list[str], size: int) -> Callable[[], int]:
  transform = pipeline.TrainTransform(size, MIN_SCALE, flip=True)

  def run() -> int:
    for k, path in enumerate(paths):
      out = transform.random_map({"image": path}, np.random.default_rng(k))
      assert out is not None and out["image"].shape == (size, size, 3)
    return len(paths)
  return run


def pil_path(paths: list[str], size: int) -> Callable[[], int]:
  """PIL alone: what the decode costs with nothing around it (no checks, no EXIF)."""
  def run() -> int:
    for k, path in enumerate(paths):
      rng = np.random.default_rng(k)
      img = Image.open(path)
      width, height = img.size
      top, left, crop_h, crop_w = pipeline.sample_crop(height, width, rng, MIN_SCALE)
      reduction = pipeline.jpeg_reduction(min(crop_h, crop_w), size)
      img.draft("RGB", (math.ceil(width / reduction), math.ceil(height / reduction)))
      sx, sy = img.size[0] / width, img.size[1] / height
      box = (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)
      out = img.resize((size, size), Image.BILINEAR, box=box)
      if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
      assert np.asarray(out).shape == (size, size, 3)
    return len(paths)
  return run


def tf_path(paths: list[str], size: int) -> Callable[[], int] | None:
  """tf.data's ImageNet crop (the TF models' `decode_and_random_crop`), one thread."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  tf.config.set_visible_devices([], "GPU")
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)

  def crop(path):
    data = tf.io.read_file(path)
    shape = tf.io.extract_jpeg_shape(data)
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.zeros([1, 0, 4]), min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(MIN_SCALE, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    image = tf.io.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize(image, (size, size), method="bilinear")
    image = tf.image.random_flip_left_right(tf.cast(tf.round(image), tf.uint8))
    return image

  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  options.autotune.enabled = False
  dataset = tf.data.Dataset.from_tensor_slices(paths).map(crop).with_options(options)

  def run() -> int:
    count = 0
    for image in dataset.as_numpy_iterator():
      count += image.shape[0] == size
    return count
  return run


def decoders_section(sets: dict[str, list[str]], args: argparse.Namespace) -> list[dict[str, Any]]:
  import cv2  # pylint: disable=g-import-not-at-top
  import simplejpeg  # pylint: disable=g-import-not-at-top

  def over(datas: list[bytes], decode: Callable[[bytes], Any]) -> Callable[[], int]:
    return lambda: sum(decode(d) is not None for d in datas)

  cv2_flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
  rows = []
  for name, paths in sets.items():
    datas = [open(p, "rb").read() for p in paths]  # pylint: disable=consider-using-with
    runs = {"pil": over(datas, lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))),
            "opencv": over(datas, lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2_flags)),
            "simplejpeg": over(datas, simplejpeg.decode_jpeg)}
    rates = {label: [] for label in runs}
    for run in runs.values():
      run()
    for _ in range(args.rounds):
      for label, run in runs.items():
        rates[label].append(_timed(run))
    rows.append({"set": name, "rates": rates})
  return rows


def _timed(run: Callable[[], int]) -> tuple[float, float]:
  """(images per CPU-second, images per wall second) of one call."""
  cpu, wall = time.process_time(), time.perf_counter()
  count = run()
  return count / (time.process_time() - cpu), count / (time.perf_counter() - wall)


def per_core(sets: dict[str, list[str]], args: argparse.Namespace) -> list[dict[str, Any]]:
  rows = []
  for name, paths in sets.items():
    runs = {"colorjax": colorjax_path(paths, args.size), "pil": pil_path(paths, args.size)}
    tf_run = tf_path(paths, args.size)
    if tf_run is not None:
      runs["tf"] = tf_run
    for run in runs.values():
      run()  # Warm: file cache, imports, tf.data's graph.
    rates = {label: [] for label in runs}
    for round_index in range(args.rounds):
      for label, run in runs.items():
        rates[label].append(_timed(run))
      print(f"per_core {name} round {round_index + 1}: " + ", ".join(
          f"{label} {r[-1][0]:.0f}/cpu-s ({r[-1][1]:.0f}/s wall)" for label, r in rates.items()),
            flush=True)
    rows.append({"set": name, "rates": rates})
  return rows


# ------------------------------------------------------------------------------------------
# 2. grain workers; 3. prepared records against the folder
# ------------------------------------------------------------------------------------------
def _train_config(name: str, size: int, workers: int, batch_size: int, data_dir: str = "") -> Any:
  config = config_base.get_base_config()
  config.batch_size = batch_size
  config.data.name, config.data.data_dir = name, data_dir
  config.data.image_size, config.data.min_crop_scale = size, MIN_SCALE
  config.data.num_workers, config.data.read_threads = workers, 1
  config.data.validation_percent = 0.0
  return config


def pipeline_rate(config: Any, batches: int) -> tuple[float, float]:
  """(images per CPU-second of this process, wall images/s) after the first batch."""
  it = iter(pipeline.create_train_dataset(config))
  next(it)  # Worker start-up, source opening and buffer filling are not throughput.
  cpu, wall = time.process_time(), time.perf_counter()
  count = sum(next(it)["image"].shape[0] for _ in range(batches))
  rates = count / (time.process_time() - cpu), count / (time.perf_counter() - wall)
  del it  # Stops the worker processes before the next cell starts its own.
  return rates


def workers_section(sets: dict[str, list[str]], args: argparse.Namespace) -> list[dict[str, Any]]:
  rows = []
  for name, paths in sets.items():
    folder = os.path.dirname(paths[0])
    rates = {w: [] for w in args.workers}
    for round_index in range(args.rounds):
      for w in args.workers:
        config = _train_config(folder, args.size, w, args.batch_size)
        rates[w].append(pipeline_rate(config, args.batches)[1])
      print(f"workers {name} round {round_index + 1}: " + ", ".join(
          f"{w} workers {r[-1]:.0f}/s" for w, r in rates.items()), flush=True)
    rows.append({"set": name, "rates": rates})
  return rows


def _cifar_subset(args: argparse.Namespace, folder: str) -> str | None:
  """--num_cifar CIFAR-10 train JPEGs, evenly over the classes, linked into `folder`."""
  train = os.path.join(args.cifar_dir, "train")
  if not os.path.isdir(train):
    print(f"prepared: no CIFAR-10 at {train}; its rows are skipped")
    return None
  paths = images.list_images(train)
  for path in paths[::max(1, len(paths) // args.num_cifar)][:args.num_cifar]:
    target = os.path.join(folder, images.relative_key(path, train))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
      os.symlink(path, target)
  return folder


def _stored(dataset: str, data_dir: str, folder: str, side: int) -> dict[str, float]:
  """Bytes per stored image and, for JPEG records, the median PSNR against the photo resized
  as `prepare` resizes it."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from colorjax.data import prepare_chunks  # pylint: disable=g-import-not-at-top
  source = tfds.data_source(dataset, split="train", data_dir=data_dir,
                            decoders={"image": tfds.decode.SkipDecoding()})
  records = [source[i] for i in range(min(len(source), 200))]
  psnrs = []
  for record in records:
    if record["image"].startswith(b"\xff\xd8"):
      path = os.path.join(folder, record["path"].decode())
      expected = prepare_chunks.resize_to_max_side(images.read_image(path).rgb, 4 * side, side)
      error = images.read_image(record["image"]).rgb.astype(np.float64) - expected
      psnrs.append(10 * np.log10(255 ** 2 / max(np.mean(error ** 2), 1e-10)))
  return {"kb": np.mean([len(r["image"]) for r in records]) / 1000,
          "psnr": _median(psnrs) if psnrs else float("nan")}


def prepared_section(sets: dict[str, list[str]], args: argparse.Namespace) -> list[dict[str, Any]]:
  from colorjax.data import prepare  # pylint: disable=g-import-not-at-top
  work = tempfile.mkdtemp(prefix="colorjax_bench_prepared_")
  folders = {name: (os.path.dirname(paths[0]), args.size, args.prepared_side)
             for name, paths in sets.items()}
  cifar = _cifar_subset(args, os.path.join(work, "cifar_src"))
  if cifar is not None:  # CIFAR at its own resolution: 32 px crops, stored at 32 px.
    folders["cifar10"] = (cifar, 32, 32)
  rows = []
  try:
    for name, (folder, size, side) in folders.items():
      data_dir = os.path.join(work, "tfds")
      configs, stored = {"folder": _train_config(folder, size, 0, args.batch_size)}, {}
      for fmt in args.prepared_formats:
        image_format, quality, chroma = (fmt.split(":") + ["95", "444"])[:3]
        dataset = f"bench_{name}_{image_format}{quality}_{chroma}"
        prepare.prepare(folder, dataset, data_dir, short_side=side, max_side=4 * side,
                        image_format=image_format, jpeg_quality=int(quality),
                        jpeg_chroma=chroma, validation_percent=0.0, workers=2, progress=False)
        configs[fmt] = _train_config(dataset, size, 0, args.batch_size, data_dir)
        stored[fmt] = _stored(dataset, data_dir, folder, side)
      batches = max(args.batches, len(sets.get(name, [])) // args.batch_size)
      rates = {label: [] for label in configs}
      for round_index in range(args.rounds):
        for label, config in configs.items():
          rates[label].append(pipeline_rate(config, batches))
        print(f"prepared {name} {size}px round {round_index + 1}: " + ", ".join(
            f"{label} {r[-1][0]:.0f}/cpu-s" for label, r in rates.items()), flush=True)
      rows.append({"set": name, "size": size, "side": side, "rates": rates, "stored": stored})
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return rows


# ------------------------------------------------------------------------------------------
# Grayscale rule: the sampled test against the full-resolution one it replaced
# ------------------------------------------------------------------------------------------
def _gray_full(rgb: np.ndarray) -> bool:
  """The rule before issue 24: a stride of max(H, W) // 512, i.e. every pixel below 1024 px."""
  return images.channels_nearly_equal(rgb, sample_side=512)


def gray_check(args: argparse.Namespace) -> None:
  test = os.path.join(args.cifar_dir, "test")
  if not os.path.isdir(test):
    print(f"gray_check: no CIFAR-10 at {test}")
    return
  paths = images.list_images(test)[:args.gray_check]
  counts = {"native": [0, 0, 0, 0], "384px": [0, 0, 0, 0]}  # gray old, gray new, false skip, miss
  for path in paths:
    native = images.read_image(path).rgb
    buffer = io.BytesIO()
    Image.fromarray(native).resize((384, 384), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    large = images.read_image(buffer.getvalue()).rgb
    for label, rgb in (("native", native), ("384px", large)):
      old, new = _gray_full(rgb), images.channels_nearly_equal(rgb)
      counts[label] = [c + int(v) for c, v in zip(counts[label], (old, new, new and not old,
                                                                  old and not new))]
  print(f"\ngrayscale rule on {len(paths)} CIFAR-10 test photos (full rule -> ~64 px sample):")
  print("| photos | gray (full rule) | gray (sample) | false skips | missed grays |")
  print("|---|---:|---:|---:|---:|")
  for label, (old, new, false_skip, miss) in counts.items():
    print(f"| {label} | {old} | {new} | {false_skip} | {miss} |")


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
  return statistics.median(values)


def print_tables(decoder_rows, per_core_rows, worker_rows, prepared_rows,
                 args) -> float | None:
  colorjax_rate = None
  if decoder_rows:
    labels = list(decoder_rows[0]["rates"])
    print(f"\n0. Full-frame JPEG decode alone, one thread, images per CPU-second (median of "
          f"{args.rounds}):")
    print("| JPEGs | " + " | ".join(labels) + " | simplejpeg / opencv |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for row in decoder_rows:
      medians = {label: _median([r[0] for r in row["rates"][label]]) for label in labels}
      print(f"| {row['set']} | " + " | ".join(f"{medians[label]:.0f}" for label in labels) +
            f" | {medians['simplejpeg'] / medians['opencv']:.2f}x |")
  if per_core_rows:
    labels = list(per_core_rows[0]["rates"])
    print(f"\n1. Per core, {args.size} px random resized crops, images per CPU-second "
          f"(median of {args.rounds} alternated rounds; min-max in brackets):")
    print("| JPEGs | " + " | ".join(labels) + (" | colorjax / tf per round |" if "tf" in labels
                                                 else " |"))
    print("|---|" + "---:|" * (len(labels) + ("tf" in labels)))
    for row in per_core_rows:
      cells = []
      for label in labels:
        cpu = [r[0] for r in row["rates"][label]]
        cells.append(f"{_median(cpu):.0f} ({min(cpu):.0f}-{max(cpu):.0f})")
      if "tf" in labels:
        ratios = [c[0] / t[0] for c, t in zip(row["rates"]["colorjax"], row["rates"]["tf"])]
        cells.append(" / ".join(f"{r:.2f}x" for r in ratios))
      print(f"| {row['set']} | " + " | ".join(cells) + " |")
    colorjax_rate = _median([r[0] for r in per_core_rows[0]["rates"]["colorjax"]])
  if worker_rows:
    print(f"\n2. grain workers (one read thread each), wall images/s, median of {args.rounds}:")
    print("| JPEGs | " + " | ".join(f"{w} workers" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for row in worker_rows:
      print(f"| {row['set']} | " + " | ".join(
          f"{_median(row['rates'][w]):.0f}" for w in args.workers) + " |")
  if prepared_rows:
    print(f"\n3. Folder vs prepared records, create_train_dataset, 0 workers, one thread, "
          f"images per CPU-second, median of {args.rounds} (prepared / folder per round):")
    print("| source | crop px | stored shorter side | format | KB per image | PSNR dB | "
          "folder | prepared | prepared / folder |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for row in prepared_rows:
      folder = [r[0] for r in row["rates"]["folder"]]
      for fmt in args.prepared_formats:
        prepared = [r[0] for r in row["rates"][fmt]]
        ratios = " / ".join(f"{p / f:.2f}x" for p, f in zip(prepared, folder))
        stored = row["stored"][fmt]
        psnr = "lossless" if fmt.startswith("png") else f"{stored['psnr']:.1f}"
        print(f"| {row['set']} | {row['size']} | {row['side']} | {fmt} | {stored['kb']:.1f} | "
              f"{psnr} | {_median(folder):.0f} | {_median(prepared):.0f} | {ratios} |")
  return colorjax_rate


def print_gpu_estimate(rate_per_core: float, args: argparse.Namespace) -> None:
  gpu_rate = args.mfu * H100_BF16_TFLOPS * 1e12 / (args.gflop_per_image * 1e9)
  print(f"\n4. An H100 training 256 px pix2pix at {args.mfu:.0%} MFU of its {H100_BF16_TFLOPS:.0f}"
        f" TFLOP/s dense bf16 peak, {args.gflop_per_image} train GFLOP per image: "
        f"{gpu_rate:.0f} images/s; at {rate_per_core:.0f} images/s per core (ImageNet-sized "
        f"JPEGs, section 1) that is {gpu_rate / rate_per_core:.1f} cores of decoding per GPU.")


def main() -> None:
  args = _parse_args()
  started, load_before = time.perf_counter(), os.getloadavg()
  sets = image_sets(args)
  decoder_rows = decoders_section(sets, args) if "decoders" in args.sections else []
  per_core_rows = per_core(sets, args) if "per_core" in args.sections else []
  worker_rows = workers_section(sets, args) if "workers" in args.sections else []
  prepared_rows = prepared_section(sets, args) if "prepared" in args.sections else []
  if args.gray_check:
    gray_check(args)

  print()
  print(f"Command: python benchmarks/input_pipeline.py {' '.join(sys.argv[1:])}".rstrip())
  print(f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; machine: "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); load "
        f"average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} at start, "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} at end; "
        f"{time.perf_counter() - started:.0f}s")
  rate = print_tables(decoder_rows, per_core_rows, worker_rows, prepared_rows, args)
  if "gpu" in args.sections and rate:
    print_gpu_estimate(rate, args)


if __name__ == "__main__":
  main()
