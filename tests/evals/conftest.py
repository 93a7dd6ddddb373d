"""Fixtures of the eval tests: Inception weights in the real file format (random, seed 0)."""

import pytest

from colorjax.evals import inception


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[str, dict]:
  params = inception.init_params(seed=0)
  path = str(tmp_path_factory.mktemp("fid") / "inception.npz")
  inception.save_params(path, params)
  return path, params
