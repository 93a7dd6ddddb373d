"""Test set-up: 8 simulated CPU devices (set before JAX starts) and fixtures.

This file applies to every folder under tests/. Helpers that test modules import live in
tests/helpers/, never here.
"""

import os

# Multi-device behaviour is tested on CPU with 8 simulated devices; this must happen before
# anything imports jax.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests import helpers  # noqa: E402


@pytest.fixture
def tiny_lsgan_config():
  return helpers.tiny_config("lsgan")


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
  """name -> the workdir of `configs/<name>.py:tiny` trained (its 2 steps), trained once per
  session and name. Tests only read it (they write their outputs under their own tmp_path)."""
  workdirs = {}

  def get(name: str = "lsgan") -> str:
    if name not in workdirs:
      workdirs[name] = helpers.train_tiny(str(tmp_path_factory.mktemp(f"{name}_tiny")), name)
    return workdirs[name]
  return get


@pytest.fixture(scope="session")
def hints_workdir(trained_tiny):
  """`configs/hints.py:tiny` trained: a generator that takes hint channels."""
  return trained_tiny("hints")


@pytest.fixture(scope="session")
def hints_colorizer(hints_workdir):
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  return inference.Colorizer.from_workdir(hints_workdir)
