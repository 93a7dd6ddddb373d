"""Tests for colorjax.data.splits: the hash split of a folder dataset's photos."""

import os
import subprocess
import sys

import pytest

from colorjax.data import splits
from tests.helpers import REPO_ROOT


def test_hash_split_is_stable_and_proportional():
  paths = [f"album_{i // 100}/IMG_{i:05d}.jpg" for i in range(20_000)]
  at5 = [splits.hash_split(p, 5) for p in paths]
  share = at5.count("validation") / len(paths)
  assert 0.045 < share < 0.055
  assert all(splits.hash_split(p, 0) == "train" for p in paths[:500])
  assert all(splits.hash_split(p, 100) == "validation" for p in paths[:500])
  # Raising the percentage only moves files into validation, never out of it.
  at10 = [splits.hash_split(p, 10) for p in paths]
  assert all(b == "validation" for a, b in zip(at5, at10) if a == "validation")
  assert splits.hash_split("a\\b.jpg", 50) == splits.hash_split("a/b.jpg", 50)
  with pytest.raises(ValueError):
    splits.hash_split("a.jpg", 101)


def test_hash_split_same_in_other_process():
  # Python's hash() is salted per process; hash_split must not depend on it.
  paths = [f"dir/{i}.png" for i in range(200)]
  here = "".join(splits.hash_split(p, 50)[0] for p in paths)
  code = ("from colorjax.data import splits; print(''.join(splits.hash_split(f'dir/{i}.png', 50)[0]"
          " for i in range(200)))")
  env = dict(os.environ, PYTHONHASHSEED="12345")
  there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=REPO_ROOT)
  assert there.stdout.strip() == here
  assert 60 < here.count("v") < 140
