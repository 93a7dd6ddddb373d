"""CPU inference with each backend: the generator at 256 px batch 8, and the colorize path on
photos up to 12 MP (read, model + recombine, write).

  python benchmarks/colorize.py [--workdir=runs/lsgan] [--backends=jax,onnxruntime]
      [--photos=0.25,1,4,12] [--repeats=3] [--rounds=2]
      [--peer_python=PY --peer=../shared/peer/torch_pix2pix.py]

Without --workdir the model is configs/pix2pix.py's U-Net at 256 px (8 levels, 54 M parameters,
the PyTorch peer's network) with random weights: they do not matter for latency.

Generator table: normalised L (8, 256, 256, 1) -> ab, the call `Colorizer.predict_ab` makes,
for JAX with XLA's convolutions, JAX with im2col (`model.conv`), ONNX Runtime (the in-memory
ONNX export, `colorjax.onnx.runtime.OnnxRuntimeColorizer`) and, with --peer_python, the PyTorch
peer's generator forward (`torch_pix2pix.py --inference`, same U-Net, its own process). Each
round runs every backend once (a warm call, then the median of --steps calls), so every number
comes from the same run; the table gives the median over rounds (robust to a shared machine's
bursts) and the best round (the peer's side-by-side script's rule).

Photo table: a real photo (scikit-image's astronaut) resized to 4:3 frames of 0.25, 1, 4 and 12
MP, written as JPEG and colorized to PNG the way `python -m colorjax.colorize` does, per
backend. The first call at each size (which compiles the per-shape full-resolution kernels) is
reported apart; the other columns are medians over --repeats warm runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np
from PIL import Image
import skimage.data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO_ROOT, git_commit  # noqa: E402  (benchmarks/common.py)

sys.path.insert(0, REPO_ROOT)
PHOTO_SIZES = {0.25: (576, 432), 1: (1152, 864), 4: (2304, 1728), 12: (4000, 3000)}


def random_pix2pix(size: int) -> tuple[Any, Any, Any, Any]:
  """(config, generator, decode, variables) of configs/pix2pix.py at `size`, random weights."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from colorjax.core import config_files  # pylint: disable=g-import-not-at-top
  from colorjax.models import unet  # pylint: disable=g-import-not-at-top
  from colorjax.training import builders  # pylint: disable=g-import-not-at-top
  config = config_files.load("pix2pix")
  config.data.image_size = size
  config.model.generator_kwargs.num_downs = unet.num_downs_for(size)
  generator, decode = builders.make_generator(config, "xla")
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = generator.init(rngs, jnp.zeros((1, size, size, 1)), train=False)
  return config, generator, decode, {"params": variables["params"],
                                     "batch_stats": variables["batch_stats"]}


def make_colorizers(args: argparse.Namespace) -> dict[str, Any]:
  """{label: colorizer} for the requested backends ("jax" gives both convolution choices)."""
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  if args.workdir:
    base = inference.Colorizer.from_workdir(args.workdir, render_size=args.size, conv="xla")
  else:
    base = inference.Colorizer(*random_pix2pix(args.size), step=0, render_size=args.size)
  colorizers = {}
  for backend in args.backends:
    if backend == "jax":
      colorizers["jax, XLA conv"] = base.with_conv("xla")
      colorizers["jax, im2col"] = base.with_conv("im2col")
    elif backend == "onnxruntime":
      from colorjax.onnx import runtime  # pylint: disable=g-import-not-at-top
      start = time.perf_counter()
      colorizers["onnxruntime"] = runtime.OnnxRuntimeColorizer(
          base.config, base.generator, base.decode, base.variables, base.step, base.render_size)
      print(f"onnxruntime: ONNX export and session in {time.perf_counter() - start:.1f} s")
    else:
      raise SystemExit(f"unknown backend {backend!r}; valid: jax, onnxruntime")
  return colorizers


def time_calls(call: Callable[[], Any], steps: int) -> float:
  """Median seconds of `steps` calls after one warm-up call."""
  np.asarray(call())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    np.asarray(call())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def peer_images_per_sec(args: argparse.Namespace, out: str) -> float | None:
  """The PyTorch peer's generator forward at (size, batch), in its own process."""
  threads = str(os.cpu_count())
  command = [args.peer_python, args.peer, "--sizes", str(args.size), "--batch_sizes",
             str(args.batch), "--steps", str(args.steps), "--warmup", "1", "--threads", threads,
             "--inference", "--json_out", out]
  env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
  result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
  if result.returncode != 0:
    print(f"peer failed: {result.stderr[-500:]}", file=sys.stderr)
    return None
  with open(out) as f:
    return json.loads(f.read().strip().splitlines()[-1])["images_per_sec"]


def generator_table(colorizers: dict[str, Any], args: argparse.Namespace, tmp: str) -> None:
  l_norm = np.random.default_rng(0).uniform(-1, 1, (args.batch, args.size, args.size, 1))
  l_norm = l_norm.astype(np.float32)
  rates: dict[str, list[float]] = {}
  for round_index in range(args.rounds):
    for label, colorizer in colorizers.items():
      rate = args.batch / time_calls(lambda c=colorizer: c.predict_ab(l_norm), args.steps)
      rates.setdefault(label, []).append(rate)
      print(f"  round {round_index + 1} {label:16s} {rate:7.2f} images/s  load "
            f"{os.getloadavg()[0]:.1f}", flush=True)
    if args.peer_python:
      rate = peer_images_per_sec(args, os.path.join(tmp, "peer.jsonl"))
      if rate is not None:
        rates.setdefault("PyTorch peer", []).append(rate)
        print(f"  round {round_index + 1} {'PyTorch peer':16s} {rate:7.2f} images/s  load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
  # The median over rounds resists a loaded machine's bursts; the best is the peer script's rule.
  median = {label: statistics.median(r) for label, r in rates.items()}
  print(f"\ngenerator {args.size} px, batch {args.batch}: {args.rounds} rounds")
  print("| backend | images/s, median of rounds | best round | median vs JAX (XLA conv) | "
        "median vs PyTorch peer |\n|---|---:|---:|---:|---:|")
  for label, rate in median.items():
    vs_jax = f"{rate / median['jax, XLA conv']:.2f}x" if "jax, XLA conv" in median else "-"
    vs_peer = f"{rate / median['PyTorch peer']:.2f}x" if "PyTorch peer" in median else "-"
    print(f"| {label} | {rate:.2f} | {max(rates[label]):.2f} | {vs_jax} | {vs_peer} |")


def time_photo(colorizer: Any, source: str, output: str) -> tuple[float, float, float]:
  """(read, model + recombine, write) seconds for one file."""
  from colorjax.data import images  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  array = images.to_model_input(images.read_image(source))
  read = time.perf_counter()
  result = colorizer(array)
  model = time.perf_counter()
  images.save_image(result, output, "png", 95)
  return read - start, model - read, time.perf_counter() - model


def photo_table(colorizers: dict[str, Any], args: argparse.Namespace, tmp: str) -> None:
  print(f"\n| backend | input | MP | first call s | read s | model + recombine s | write s | "
        f"total s |\n|---|---|---:|---:|---:|---:|---:|---:|")
  photo = Image.fromarray(skimage.data.astronaut())
  for megapixels in args.photos:
    width, height = PHOTO_SIZES[megapixels]
    source = os.path.join(tmp, f"photo_{width}x{height}.jpg")
    photo.resize((width, height), Image.Resampling.BICUBIC).save(source, quality=92)
    output = os.path.join(tmp, "out.png")
    for label, colorizer in colorizers.items():
      first = sum(time_photo(colorizer, source, output))
      runs = np.array([time_photo(colorizer, source, output) for _ in range(args.repeats)])
      read, model, write = (statistics.median(runs[:, i]) for i in range(3))
      total = statistics.median(runs.sum(axis=1))
      print(f"| {label} | {width}x{height} | {megapixels} | {first:.2f} | {read:.3f} | "
            f"{model:.3f} | {write:.3f} | {total:.3f} |", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default=None, help="a trained workdir (default: random "
                      "pix2pix weights at --size)")
  parser.add_argument("--backends", default="jax,onnxruntime",
                      type=lambda s: [b for b in s.split(",") if b])
  parser.add_argument("--size", type=int, default=256, help="render size")
  parser.add_argument("--batch", type=int, default=8, help="generator table batch")
  parser.add_argument("--steps", type=int, default=5, help="timed generator calls per round")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--photos", default=sorted(PHOTO_SIZES),
                      type=lambda s: [float(v) if "." in v else int(v) for v in s.split(",") if v])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--peer_python", default=None, help="python of the PyTorch peer's venv")
  parser.add_argument("--peer", default=os.path.join(os.path.dirname(REPO_ROOT), "shared",
                                                     "peer", "torch_pix2pix.py"))
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  import onnxruntime  # pylint: disable=g-import-not-at-top
  print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
        f"({jax.default_backend()}), onnxruntime {onnxruntime.__version__}, colorjax "
        f"{git_commit()[:7]}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
  with tempfile.TemporaryDirectory() as tmp:
    colorizers = make_colorizers(args)
    generator_table(colorizers, args, tmp)
    if args.photos:
      photo_table(colorizers, args, tmp)
  print(f"# load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  sys.exit(main())
