"""Latency of the colorize path (read, model + recombine, write) per megapixel.

  python benchmarks/colorize.py [--workdir=runs/lsgan] [--repeats=3]

Without --workdir, trains the default lsgan config (configs/lsgan.py: 64 px, U-Net with 6
levels) for one step into a temporary workdir: the weights do not matter for latency. Inputs
are a real photo (scikit-image's astronaut) resized to 4:3 frames of 0.25, 1, 4 and 12 MP,
written as JPEG; each is colorized to PNG the way `python -m colorjax.colorize` does. The first
call at each size (which compiles the per-shape full-resolution kernels) is reported apart;
the other columns are medians over --repeats warm runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image
import skimage.data

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ((576, 432), (1152, 864), (2304, 1728), (4000, 3000))  # 0.25, 1, 4, 12 MP.


def train_default_model(workdir: str) -> None:
  """One training step of configs/lsgan.py, checkpointed, no eval."""
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from colorjax.core import config_files  # pylint: disable=g-import-not-at-top
  config = config_files.load("lsgan")
  config.num_train_steps = config.checkpoint_every_steps = config.log_every_steps = 1
  train.train_and_evaluate(config, workdir)


def time_once(colorizer, source: str, output: str) -> tuple[float, float, float]:
  """(read, model + recombine, write) seconds for one file."""
  from colorjax.data import images  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  array = images.to_model_input(images.read_image(source))
  read = time.perf_counter()
  result = colorizer(array)
  model = time.perf_counter()
  images.save_image(result, output, "png", 95)
  return read - start, model - read, time.perf_counter() - model


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    workdir = args.workdir or os.path.join(tmp, "workdir")
    if args.workdir is None:
      train_default_model(workdir)
    colorizer = inference.Colorizer.from_workdir(workdir)
    print(f"model: {colorizer.config.model.generator} {dict(colorizer.config.model.generator_kwargs)}"
          f", render size {colorizer.render_size}, step {colorizer.step}")
    print(f"{'size':>11} {'MP':>6} {'first s':>8} {'read s':>7} {'model s':>8} {'write s':>8} "
          f"{'total s':>8} {'s/MP':>6}")
    photo = Image.fromarray(skimage.data.astronaut())
    for width, height in SIZES:
      source = os.path.join(tmp, f"photo_{width}x{height}.jpg")
      photo.resize((width, height), Image.Resampling.BICUBIC).save(source, quality=92)
      output = os.path.join(tmp, "out.png")
      first = sum(time_once(colorizer, source, output))
      runs = np.array([time_once(colorizer, source, output) for _ in range(args.repeats)])
      read, model, write = (statistics.median(runs[:, i]) for i in range(3))
      total = statistics.median(runs.sum(axis=1))
      megapixels = width * height / 1e6
      print(f"{width:>5}x{height:<5} {megapixels:6.2f} {first:8.2f} {read:7.3f} {model:8.3f} "
            f"{write:8.3f} {total:8.3f} {total / megapixels:6.3f}", flush=True)


if __name__ == "__main__":
  sys.exit(main())
