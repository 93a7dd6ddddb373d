"""Tests for colorjax.color.soft_encoding: soft-encoding ab over the nearest bins, and the
class-rebalanced cross-entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import transform

from colorjax.color import soft_encoding
from tests.helpers import skimage_photos
from tests.helpers.ab_bins import lab_ab, nearest_bins


def test_soft_encode_sums_to_one_and_peaks_at_the_nearest_bin(bins):
  ab = lab_ab(skimage_photos(32)[:2])
  indices, weights = jax.jit(soft_encoding.soft_encode, static_argnums=2)(
      jnp.asarray(ab, jnp.float32), bins, 5)
  assert indices.shape == weights.shape == ab.shape[:-1] + (5,)
  np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-5)
  order, d2 = nearest_bins(ab, bins)
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
  order, d2 = nearest_bins(ab, bins)
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
  ab = lab_ab(skimage_photos(32)[:2])
  ab_small = np.asarray(soft_encoding.area_downsample(jnp.asarray(ab, jnp.float32), (8, 8)))
  logits = rng.normal(size=ab_small.shape[:-1] + (len(bins),)).astype(np.float32)
  class_weights = rng.uniform(0.2, 5.0, size=len(bins)).astype(np.float32)
  loss = jax.jit(soft_encoding.rebalanced_cross_entropy, static_argnums=(4, 5))(
      logits, ab_small, bins, class_weights, 5, 5.0)
  # Dense reference: the soft target over all Q bins, built in numpy.
  order, d2 = nearest_bins(ab_small.astype(np.float64), bins)
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
