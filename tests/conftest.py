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


def tiny_config(name: str = "lsgan"):
  """A config file from configs/ shrunk to seconds per step on CPU: 16 px, 8 images, tiny nets."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(f"cfg_{name}",
                                                os.path.join(REPO_ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.batch_size = 8
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 2
  config.sample_every_steps = 2
  config.data.image_size = 16
  config.eval.batch_size = 8
  config.eval.num_images = 6
  config.eval.num_samples = 4
  if config.model.generator == "unet":
    config.model.generator_kwargs = {"num_downs": 3, "features": 8, "max_features": 16}
  elif "width" in config.model.generator_kwargs:
    config.model.generator_kwargs.width = 8
  if config.model.discriminator == "patchgan":
    config.model.discriminator_kwargs.update({"features": 8, "num_layers": 2})
  elif "width" in config.model.discriminator_kwargs:
    config.model.discriminator_kwargs.width = 8
  config.lock()
  return config


@pytest.fixture
def tiny_lsgan_config():
  return tiny_config("lsgan")
