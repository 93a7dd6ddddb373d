"""Test set-up: 8 simulated CPU devices (set before JAX starts) and small shared fixtures."""

import os

# Multi-device behaviour is tested on CPU with 8 simulated devices; this must happen before
# anything imports jax.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR10_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "cifar10")


def load_config(name: str, variant: str = ""):
  """`configs/<name>.py:<variant>`, locked, as `--config=configs/<name>.py:<variant>` gives it."""
  from colorjax.core import config_files  # pylint: disable=g-import-not-at-top
  return config_files.load(f"{name}:{variant}", locked=True)


def tiny_config(name: str = "lsgan"):
  """`configs/<name>.py:tiny`: the variant a user can run too, seconds per run on CPU."""
  return load_config(name, "tiny")


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


@pytest.fixture
def tiny_lsgan_config():
  return tiny_config("lsgan")
