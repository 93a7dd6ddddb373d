"""What several test modules share: the repository's paths, the tiny configs, real photos.

Test modules import from here (`from tests.helpers import tiny_config`), never from conftest.py,
which only sets up the environment (before JAX starts) and holds fixtures. Nothing here imports
JAX or TensorFlow at import time: tests/end_to_end/test_core_without_tf.py imports this package
in an install without TensorFlow. The submodules:

* launch.py: tests that run `colorjax.main` and other commands as real subprocesses;
* chromium.py: the demo page in headless Chromium (Playwright);
* video_clips.py: real-codec test clips made from photos (also used by benchmarks/video.py);
* checkpoints.py: trained workdirs with several checkpoints, and damaging them;
* ab_bins.py: reference ab and nearest bins (scikit-image, numpy) for the colour tests.
"""

from __future__ import annotations

import importlib.util
import os
import types

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CIFAR10_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "cifar10")


def load_config(name: str, variant: str = ""):
  """`configs/<name>.py:<variant>`, locked, as `--config=configs/<name>.py:<variant>` gives it."""
  from colorjax.core import config_files  # pylint: disable=g-import-not-at-top
  return config_files.load(f"{name}:{variant}", locked=True)


def tiny_config(name: str = "lsgan"):
  """`configs/<name>.py:tiny`: the variant a user can run too, seconds per run on CPU."""
  return load_config(name, "tiny")


def train_tiny(workdir: str, name: str = "lsgan") -> str:
  """Trains `configs/<name>.py:tiny` (its 2 steps) into `workdir`; returns `workdir`."""
  from colorjax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(tiny_config(name), workdir)
  return workdir


def skimage_photos(size: int):
  """scikit-image's five bundled colour photos (astronaut, chelsea, coffee, rocket, motorcycle),
  resized to size x size, as a uint8 batch (5, size, size, 3)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from skimage import data, transform  # pylint: disable=g-import-not-at-top
  images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(),
            data.stereo_motorcycle()[0]]
  return np.stack([
      (transform.resize(image, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
      for image in images])


def photo_batch(size: int = 16, n: int = 8):
  """`n` crops of the astronaut photo resized to size x size: a uint8 batch (n, size, size, 3)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top
  photo = skimage.data.astronaut()
  crops = [photo[i * 40:i * 40 + 128, i * 40:i * 40 + 128] for i in range(n)]
  return np.stack([np.asarray(jax.image.resize(c, (size, size, 3), "bilinear")).astype(np.uint8)
                   for c in crops])


def serve_load_module() -> types.ModuleType:
  """benchmarks/serve_load.py (the demo server as a subprocess, and its load), as a module."""
  spec = importlib.util.spec_from_file_location(
      "serve_load", os.path.join(REPO_ROOT, "benchmarks", "serve_load.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# Every kind of generator: U-Net, Zhang et al.'s CNN (classification), fusion, plain.
GENERATOR_CONFIGS = ["lsgan", "colorful", "fusion_attention", "plain"]


def random_colorizer(name: str):
  """configs/<name>.py:tiny with random weights and random BatchNorm statistics, so that folding
  BatchNorm into the convolutions is tested with statistics that are not the identity."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  from colorjax.training import builders  # pylint: disable=g-import-not-at-top
  config = tiny_config(name)
  generator, decode = builders.make_generator(config, "xla")
  size = config.data.image_size
  variables = generator.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                             jnp.zeros((1, size, size, 1)), train=False)
  rng = np.random.default_rng(0)

  def perturb(path, leaf):
    kind = jax.tree_util.keystr(path)
    if "mean" in kind:
      return jnp.asarray(rng.normal(0, 0.3, leaf.shape), leaf.dtype)
    if "var" in kind:
      return jnp.asarray(rng.uniform(0.3, 2.0, leaf.shape), leaf.dtype)
    return leaf
  stats = jax.tree_util.tree_map_with_path(perturb, variables.get("batch_stats", {}))
  return inference.Colorizer(config, generator, decode,
                             {"params": variables["params"], "batch_stats": stats}, step=0)


def odd_inputs():
  """A colour photo, a gray one, a uint16 one and an RGBA one, of different sizes."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top
  rgba = np.concatenate([skimage.data.chelsea()[:50, :70],
                         np.full((50, 70, 1), 128, np.uint8)], axis=-1)
  return [skimage.data.astronaut()[:120, :160], skimage.data.camera()[:97, :61],
          skimage.data.coffee()[:64, :96].astype(np.uint16) * 257, rgba]
