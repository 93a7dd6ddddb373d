"""Tests for colorjax.color.gamut: the in-gamut ab bins and user bins files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from colorjax.color import gamut
from tests.helpers.ab_bins import GRID


def test_gamut_bins_are_the_rounded_cells_of_srgb(bins):
  assert bins.shape == (261, 2)
  assert bins.dtype == np.float32
  np.testing.assert_array_equal(bins % GRID, 0)  # Centres on multiples of the grid.
  assert len(np.unique(bins, axis=0)) == len(bins)
  # Lexicographic order, so a bin's index is stable across runs and machines.
  assert [tuple(b) for b in bins] == sorted(tuple(b) for b in bins)
  # Neutral gray's cell and the extreme chromas of green (a ~ -86) and blue (b ~ -108).
  assert {(0.0, 0.0), (-90.0, 80.0), (80.0, -110.0)} <= {tuple(b) for b in bins.tolist()}
  assert gamut.gamut_bins(GRID) is bins  # Cached.
  assert len(gamut.gamut_bins(20)) < len(bins)


@pytest.mark.slow  # ~4 s.
def test_every_srgb_color_is_within_half_a_cell_diagonal_of_a_bin(bins):
  half_diagonal = GRID * np.sqrt(2) / 2
  tree = cKDTree(bins.astype(np.float64))
  farthest = 0.0
  for ab in gamut.srgb_gamut_ab():
    distance, _ = tree.query(ab, k=1)
    farthest = max(farthest, distance.max())
  assert farthest <= half_diagonal
  # The bound is nearly attained: the bins are not looser than needed.
  assert farthest > 0.99 * half_diagonal


def test_user_bins_file_round_trips_and_bad_files_are_rejected(bins, tmp_path):
  # A coarser, shifted grid stands in for a user's bins (e.g. Zhang et al.'s 313).
  user = np.stack(np.meshgrid(np.arange(-105, 106, 15), np.arange(-105, 106, 15)), -1)
  user = user.reshape(-1, 2).astype(np.float64)
  path = tmp_path / "bins.npy"
  np.save(path, user)
  loaded = gamut.load_bins(str(path), GRID)
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, user)
  assert gamut.load_bins(None, GRID) is bins

  bad = {
      "shape.npy": np.zeros((10, 3)),
      "duplicates.npy": np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]]),
      "nan.npy": np.array([[0.0, np.nan], [10.0, 0.0]]),
      "range.npy": np.array([[0.0, 0.0], [1000.0, 0.0]]),
  }
  messages = {"shape.npy": "shape", "duplicates.npy": "distinct", "nan.npy": "finite",
              "range.npy": "Lab units"}
  for name, array in bad.items():
    np.save(tmp_path / name, array)
    with pytest.raises(ValueError, match=messages[name]):
      gamut.load_bins(str(tmp_path / name), GRID)
  (tmp_path / "text.npy").write_text("not an array")
  with pytest.raises(ValueError, match="cannot read"):
    gamut.load_bins(str(tmp_path / "text.npy"), GRID)
