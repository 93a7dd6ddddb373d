"""The ab bins of the classification colorizers, computed independently with scikit-image and numpy.

Shared by tests/color/ (test_gamut, test_soft_encoding, test_rebalance, test_decode).
"""

from __future__ import annotations

import numpy as np
from skimage import color

GRID = 10


def lab_ab(rgb_uint8: np.ndarray) -> np.ndarray:
  """Reference ab (Lab units) from scikit-image, float64."""
  return color.rgb2lab(rgb_uint8)[..., 1:]


def nearest_bins(ab: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Bin indices from nearest to farthest and their squared distances, per ab pixel."""
  d2 = ((ab[..., None, :] - bins.astype(np.float64)) ** 2).sum(-1)
  return np.argsort(d2, axis=-1, kind="stable"), np.sort(d2, axis=-1)
