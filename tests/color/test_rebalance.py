"""Tests for colorjax.color.rebalance: the colour prior over the ab bins and the rebalancing
weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.color import rebalance
from tests.helpers import skimage_photos
from tests.helpers.ab_bins import GRID, lab_ab, nearest_bins


def test_rebalancing_weights_have_unit_expectation_under_the_prior():
  rng = np.random.default_rng(3)
  p = rng.dirichlet(np.full(261, 0.3)).astype(np.float32)
  for lam in (0.0, 0.5, 0.9):
    w = np.asarray(rebalance.rebalancing_weights(p, lam))
    np.testing.assert_allclose((p * w).sum(), 1.0, rtol=1e-5)
    # Rare colours weigh more.
    assert np.all(np.diff(w[np.argsort(p)]) <= 1e-5)
  np.testing.assert_allclose(rebalance.rebalancing_weights(p, 1.0), 1.0, rtol=1e-5)


def test_a_one_colour_dataset_concentrates_the_prior_on_its_bin(bins):
  rgb = np.array([230, 120, 30], np.uint8)
  images = np.broadcast_to(rgb, (3, 8, 8, 3))
  counts = jax.jit(rebalance.accumulate_bin_counts)(jnp.zeros(len(bins)), images, bins)
  expected_bin = np.argmin(((bins - lab_ab(rgb[None, None])[0, 0]) ** 2).sum(-1))
  np.testing.assert_array_equal(np.nonzero(np.asarray(counts))[0], [expected_bin])
  assert counts[expected_bin] == images.size // 3
  prior = rebalance.smooth_prior(rebalance.prior_from_counts(counts), bins)
  np.testing.assert_allclose(float(prior.sum()), 1.0, rtol=1e-5)
  assert int(np.argmax(prior)) == expected_bin
  # Smoothing spreads mass only to the neighbouring cells (sigma 5 vs a grid of 10).
  far = np.linalg.norm(bins - bins[expected_bin], axis=-1) > 2 * GRID
  assert float(prior[far].sum()) < 1e-3


def test_grayscale_images_do_not_count(bins):
  gray = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8).reshape(1, 8, 8, 1), 3, axis=-1)
  colour = np.broadcast_to(np.array([30, 90, 200], np.uint8), (1, 8, 8, 3))
  counts = rebalance.accumulate_bin_counts(jnp.zeros(len(bins)),
                                          np.concatenate([gray, colour]), bins)
  assert float(counts.sum()) == 64


def test_counts_on_a_photo_match_a_numpy_reference(bins):
  photo = skimage_photos(32)[:1]
  counts = rebalance.accumulate_bin_counts(jnp.zeros(len(bins)), photo, bins)
  order, d2 = nearest_bins(lab_ab(photo), bins)
  expected = np.bincount(order[..., 0].ravel(), minlength=len(bins))
  # float32 vs float64 Lab may flip pixels that sit on a cell edge.
  assert np.abs(np.asarray(counts) - expected).sum() <= 2 * 0.01 * photo[..., 0].size


def test_the_prior_of_real_photos_peaks_near_neutral(bins, tmp_path):
  prior = rebalance.estimate_prior([skimage_photos(64)[:3], skimage_photos(64)[3:]], bins, grid=GRID)
  peak = bins[np.argmax(prior.prior)]
  assert np.linalg.norm(peak) <= GRID
  np.testing.assert_allclose(float((prior.prior * prior.weights).sum()), 1.0, rtol=1e-5)
  assert prior.weights[np.argmax(prior.prior)] == prior.weights.min()

  path = str(tmp_path / "prior.npz")
  rebalance.save_prior(path, prior)
  loaded = rebalance.load_prior(path)
  for field in ("counts", "prior", "weights", "bins"):
    np.testing.assert_array_equal(getattr(loaded, field), getattr(prior, field))
  assert (loaded.grid, loaded.lam, loaded.sigma) == (GRID, 0.5, 5.0)

  np.savez(tmp_path / "partial.npz", counts=prior.counts, bins=prior.bins)
  with pytest.raises(ValueError, match="missing"):
    rebalance.load_prior(str(tmp_path / "partial.npz"))
