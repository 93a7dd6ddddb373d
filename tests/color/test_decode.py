"""Tests for colorjax.color.decode: from logits over the ab bins to ab (mode, mean, annealed
mean)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.color import decode


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
