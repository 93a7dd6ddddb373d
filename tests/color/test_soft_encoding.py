"""Tests for colorjax.color.{gamut,soft_encoding,decode,rebalance}: bins, soft encoding, loss, decoding and the colour prior."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage import color, transform

from colorjax.color import decode
from colorjax.color import gamut
from colorjax.color import rebalance
from colorjax.color import soft_encoding
from tests.helpers import skimage_photos

GRID = 10


@pytest.fixture(scope="module")
def bins() -> np.ndarray:
  return gamut.gamut_bins(GRID)


def _ab(rgb_uint8: np.ndarray) -> np.ndarray:
  """Reference ab (Lab units) from scikit-image, float64."""
  return color.rgb2lab(rgb_uint8)[..., 1:]


def _nearest_numpy(ab: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  d2 = ((ab[..., None, :] - bins.astype(np.float64)) ** 2).sum(-1)
  return np.argsort(d2, axis=-1, kind="stable"), np.sort(d2, axis=-1)


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


def test_soft_encode_sums_to_one_and_peaks_at_the_nearest_bin(bins):
  ab = _ab(skimage_photos(32)[:2])
  indices, weights = jax.jit(soft_encoding.soft_encode, static_argnums=2)(
      jnp.asarray(ab, jnp.float32), bins, 5)
  assert indices.shape == weights.shape == ab.shape[:-1] + (5,)
  np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-5)
  order, d2 = _nearest_numpy(ab, bins)
  # The nearest bin (ties aside) comes first and carries the most weight.
  unambiguous = d2[..., 1] - d2[..., 0] > 1e-2
  assert unambiguous.mean() > 0.95
  np.testing.assert_array_equal(np.asarray(indices)[..., 0][unambiguous],
                                order[..., 0][unambiguous])
  np.testing.assert_array_equal(np.argmax(np.asarray(weights), -1), 0)
  assert np.all(np.diff(np.asarray(weights), axis=-1) <= 1e-6)  # Farther bins, less weight.


def test_soft_encode_weights_are_normalised_gaussians(bins):
  ab = np.array([[23.4, -41.7], [0.0, 0.0], [-80.2, 75.3]])
  sigma = 5.0
  indices, weights = soft_encoding.soft_encode(jnp.asarray(ab, jnp.float32), bins, 5, sigma)
  order, d2 = _nearest_numpy(ab, bins)
  gauss = np.exp(-d2[:, :5] / (2 * sigma ** 2))
  np.testing.assert_allclose(np.asarray(weights), gauss / gauss.sum(-1, keepdims=True),
                             atol=1e-5)
  np.testing.assert_array_equal(np.sort(np.asarray(indices), -1), np.sort(order[:, :5], -1))


def test_area_downsample_matches_block_means():
  rng = np.random.default_rng(0)
  ab = rng.normal(size=(2, 16, 24, 2)).astype(np.float32)
  got = soft_encoding.area_downsample(jnp.asarray(ab), (4, 6))
  expected = transform.downscale_local_mean(ab, (1, 4, 4, 1))
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)
  with pytest.raises(ValueError, match="must divide"):
    soft_encoding.area_downsample(jnp.asarray(ab), (5, 6))


def test_rebalanced_cross_entropy_matches_a_dense_reference(bins):
  rng = np.random.default_rng(1)
  ab = _ab(skimage_photos(32)[:2])
  ab_small = np.asarray(soft_encoding.area_downsample(jnp.asarray(ab, jnp.float32), (8, 8)))
  logits = rng.normal(size=ab_small.shape[:-1] + (len(bins),)).astype(np.float32)
  class_weights = rng.uniform(0.2, 5.0, size=len(bins)).astype(np.float32)
  loss = jax.jit(soft_encoding.rebalanced_cross_entropy, static_argnums=(4, 5))(
      logits, ab_small, bins, class_weights, 5, 5.0)
  # Dense reference: the soft target over all Q bins, built in numpy.
  order, d2 = _nearest_numpy(ab_small.astype(np.float64), bins)
  gauss = np.exp(-d2[..., :5] / 50.0)
  target = np.zeros(logits.shape)
  np.put_along_axis(target, order[..., :5], gauss / gauss.sum(-1, keepdims=True), axis=-1)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = np.mean(class_weights[order[..., 0]] * -(target * log_probs).sum(-1))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  unweighted = soft_encoding.rebalanced_cross_entropy(logits, ab_small, bins, None)
  np.testing.assert_allclose(float(unweighted), np.mean(-(target * log_probs).sum(-1)),
                             rtol=1e-4)
  with pytest.raises(ValueError, match="area_downsample"):
    soft_encoding.rebalanced_cross_entropy(logits, ab, bins, class_weights)


def test_annealed_mean_interpolates_between_mode_and_mean(bins):
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(scale=2.0, size=(3, 4, len(bins))), jnp.float32)
  mode = decode.decode_mode(logits, bins)
  mean = decode.decode_mean(logits, bins)
  np.testing.assert_array_equal(np.asarray(decode.annealed_mean(logits, bins, 0)), mode)
  np.testing.assert_allclose(np.asarray(decode.annealed_mean(logits, bins, 1e-5)), mode,
                             atol=1e-3)
  np.testing.assert_allclose(np.asarray(decode.annealed_mean(logits, bins, 1.0)), mean,
                             atol=1e-4)
  probs = np.exp(np.asarray(logits, np.float64))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(mean), probs @ bins, atol=1e-3)
  # The default temperature lands strictly between the two (farther from 0 than the mean).
  annealed = np.asarray(jax.jit(decode.annealed_mean)(logits, bins))
  assert np.all(np.linalg.norm(annealed, axis=-1) > np.linalg.norm(mean, axis=-1))
  image = decode.logits_to_ab_norm(logits[None, :, :3], bins, (6, 12))
  assert image.shape == (1, 6, 12, 2)


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
  expected_bin = np.argmin(((bins - _ab(rgb[None, None])[0, 0]) ** 2).sum(-1))
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
  order, d2 = _nearest_numpy(_ab(photo), bins)
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
