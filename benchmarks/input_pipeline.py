"""Throughput of the grain train pipeline next to what the jitted train step consumes.

Input side: decoded + augmented uint8 images/s of `pipeline.create_train_dataset` (decode, random
resized crop, flip, batch) for each source x image size x number of grain workers. The first batch
is excluded (it pays for starting worker processes and filling buffers); then at least
--batches batches and at least --min_seconds are timed. Sources:
  * tfds_cifar:  CIFAR-10 train prepared by `python -m colorjax.prepare` (ArrayRecord, 32 px PNG);
  * folder_cifar: the same CIFAR-10 JPEGs read directly as a folder source;
  * folder_large: ~200 JPEGs of 512-1024 px (crops of scikit-image's photos, written once to
    --large_dir), the cost profile of ImageNet / Places-sized photos.

Consumption side: images/s of the real jitted train step (`steps.train_step`, as `train.py`
builds it; compilation excluded) for the default lsgan config at 64 px (batch 16) and the CIFAR
config at 32 px (batch 64, `model.generator_kwargs.num_downs=5`).

Usage (12 minutes on 2 cores shared with other jobs; --sources, --sizes and --workers cut it):
  python3 benchmarks/input_pipeline.py [--sizes 32 64 128 256] [--workers 0 1 2] \
      [--batches 2] [--min_seconds 1.5] [--batch_size 16] [--step_batches 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from typing import Any

import jax
import numpy as np
from PIL import Image

from colorjax.core import config_base
from colorjax.core import config_files
from colorjax.data import pipeline
from colorjax.training import builders

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CIFAR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "cifar10", "train")


def _parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--sources", nargs="+",
                      default=["tfds_cifar", "folder_cifar", "folder_large"])
  parser.add_argument("--batch_size", type=int, default=16, help="images per pipeline batch")
  parser.add_argument("--batches", type=int, default=2, help="least batches timed per cell")
  parser.add_argument("--min_seconds", type=float, default=1.5, help="least seconds per cell")
  parser.add_argument("--cifar_dir", default=DEFAULT_CIFAR)
  parser.add_argument("--prepared_dir", default="/tmp/cifar_prepared")
  parser.add_argument("--prepared_name", default="cifar10_train")
  parser.add_argument("--large_dir", default="/tmp/colorjax_bench_large")
  parser.add_argument("--num_large", type=int, default=200)
  parser.add_argument("--step_batches", type=int, default=2, help="train steps timed per config")
  return parser.parse_args()


def make_large_jpegs(folder: str, count: int) -> None:
  """`count` JPEGs, longer side 512-1024 px: random crops of scikit-image's colour photos,
  upsampled where the photo is smaller (the decode cost depends on pixels, not content)."""
  from skimage import data
  if os.path.isdir(folder) and len(os.listdir(folder)) >= count:
    return
  os.makedirs(folder, exist_ok=True)
  left, _, _ = data.stereo_motorcycle()
  photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), left,
            data.immunohistochemistry(), data.hubble_deep_field(), data.retina()]
  rng = np.random.default_rng(0)
  for k in range(count):
    photo = photos[k % len(photos)]
    height, width = photo.shape[:2]
    crop_h, crop_w = int(height * rng.uniform(0.6, 1)), int(width * rng.uniform(0.6, 1))
    top, left_edge = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = Image.fromarray(photo[top:top + crop_h, left_edge:left_edge + crop_w])
    scale = rng.uniform(512, 1024) / max(crop_h, crop_w)
    crop = crop.resize((round(crop_w * scale), round(crop_h * scale)), Image.BICUBIC)
    crop.save(os.path.join(folder, f"large_{k:04d}.jpg"), quality=90)


def _data_config(args: argparse.Namespace, source: str, size: int, workers: int) -> Any:
  config = config_base.get_base_config()
  config.batch_size = args.batch_size
  config.data.image_size = size
  config.data.num_workers = workers
  if source == "tfds_cifar":
    config.data.name, config.data.data_dir = args.prepared_name, args.prepared_dir
  elif source == "folder_cifar":
    config.data.name = args.cifar_dir
  else:
    config.data.name = args.large_dir
  return config


def pipeline_rate(config: Any, batches: int, min_seconds: float) -> float:
  """Images/s of the train pipeline after its first batch."""
  it = iter(pipeline.create_train_dataset(config))
  next(it)  # Worker start-up, source opening and buffer filling are not throughput.
  count, start = 0, time.perf_counter()
  while count < batches or time.perf_counter() - start < min_seconds:
    batch = next(it)
    count += 1
  elapsed = time.perf_counter() - start
  del it  # Stops the worker processes before the next cell starts its own.
  return count * batch["image"].shape[0] / elapsed


def step_rate(config: Any, steps_timed: int) -> float:
  """Images/s of the jitted train step (as train.py builds it), compilation excluded."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  parts = builders.make_step_parts(config)
  _, batch_sharding = builders.shardings(mesh)
  state = builders.init_state(config, parts, mesh)
  train_step = builders.make_train_step(config, parts, mesh)
  size = config.data.image_size
  rng = np.random.default_rng(0)
  batch = {"image": jax.device_put(
      rng.integers(0, 256, (config.batch_size, size, size, 3), np.uint8), batch_sharding)}
  state, metrics = train_step(state, batch)  # Compiles.
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps_timed):
    state, metrics = train_step(state, batch)
  jax.block_until_ready((state, metrics))
  return steps_timed * config.batch_size / (time.perf_counter() - start)


def main() -> None:
  args = _parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  started = time.perf_counter()
  load_before = os.getloadavg()
  if "folder_large" in args.sources:
    make_large_jpegs(args.large_dir, args.num_large)

  rows = []
  for source in args.sources:
    for size in args.sizes:
      rates = [pipeline_rate(_data_config(args, source, size, w), args.batches, args.min_seconds)
               for w in args.workers]
      rows.append((source, size, rates))
      print(f"{source:13s} {size:4d}px " + " ".join(f"{r:8.0f}" for r in rates), flush=True)

  step_configs = {"lsgan 64px, batch 16": (64, 16, 6), "lsgan 32px, batch 64": (32, 64, 5)}
  step_rows = []
  for label, (size, batch_size, num_downs) in step_configs.items():
    config = train_config(size, batch_size, num_downs)
    step_rows.append((label, step_rate(config, args.step_batches)))
    print(f"train step {label}: {step_rows[-1][1]:.0f} images/s", flush=True)

  print()
  print(f"Command: python3 benchmarks/input_pipeline.py {' '.join(sys.argv[1:])}".rstrip())
  print(f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; machine: "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"jax {jax.__version__} on {jax.devices()[0].platform}; load average (1/5/15 min) "
        f"{'/'.join(f'{x:.1f}' for x in load_before)} at start, "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} at end; "
        f"pipeline batch {args.batch_size}; total {time.perf_counter() - started:.0f}s")
  print()
  header = " | ".join(f"{w} workers" for w in args.workers)
  print(f"| source | size | {header} |")
  print("|---|---:|" + "---:|" * len(args.workers))
  for source, size, rates in rows:
    print(f"| {source} | {size} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
  print()
  print("| train step (jitted, compile excluded) | images/s |")
  print("|---|---:|")
  for label, rate in step_rows:
    print(f"| {label} | {rate:.0f} |")


def train_config(size: int, batch_size: int, num_downs: int) -> Any:
  """configs/lsgan.py at `size` px with `batch_size` and the U-Net's `num_downs`."""
  config = config_files.load("lsgan")
  config.data.image_size = size
  config.batch_size = batch_size
  config.model.generator_kwargs.num_downs = num_downs
  return config


if __name__ == "__main__":
  main()
