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


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
  """(root, relative paths prepare must write, {relative path: skip reason}) of a real folder
  of photos and broken files (tests/helpers/photo_folder.py)."""
  from tests.helpers import photo_folder as folder  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("photos")
  good, skipped = folder.make_photo_folder(root)
  return root, good, skipped


@pytest.fixture(scope="module")
def prepared_photo_folder(photo_folder, tmp_path_factory):
  """(data_dir, summary) of `photo_folder` prepared as the TFDS dataset "my_photos" (needs TF)."""
  from colorjax.data import prepare  # pylint: disable=g-import-not-at-top
  from tests.helpers import photo_folder as folder  # pylint: disable=g-import-not-at-top
  root, _, _ = photo_folder
  data_dir = tmp_path_factory.mktemp("tfds")
  summary = prepare.prepare(root, "my_photos", data_dir, max_side=folder.MAX_SIDE,
                            validation_percent=folder.VALIDATION_PERCENT, workers=2, chunk_size=4,
                            progress=False)
  return data_dir, summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir with checkpoints at steps 2, 4 and 6 (copy it before damaging it), trained once
  per module (tests/helpers/checkpoints.py)."""
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from tests.helpers.checkpoints import STEPS, fault_config  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("trained") / "workdir")
  train.train_and_evaluate(fault_config(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(s) for s in STEPS]
  return workdir


@pytest.fixture(scope="module")
def class_root(tmp_path_factory):
  """A folder with one subfolder per class of real photo crops (tests/helpers/classes.py)."""
  from tests.helpers import classes  # pylint: disable=g-import-not-at-top
  return classes.write_class_folder(tmp_path_factory.mktemp("classes"))
