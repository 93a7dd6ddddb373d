"""Fixtures of the colour tests: the in-gamut ab bins at the default 10-unit grid."""

import numpy as np
import pytest

from colorjax.color import gamut
from tests.helpers.ab_bins import GRID


@pytest.fixture(scope="module")
def bins() -> np.ndarray:
  return gamut.gamut_bins(GRID)
