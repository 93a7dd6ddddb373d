"""From a classification colorizer's logits over the ab bins to ab: mode, mean and the annealed
mean (Zhang, Isola & Efros 2016, Sec. 2.3), in jnp inside `jax.jit`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax.color import lab

DEFAULT_TEMPERATURE = 0.38  # Zhang et al.'s annealed-mean temperature.


def decode_mode(logits: jax.Array, bins: jax.Array) -> jax.Array:
  """(..., Q) logits -> (..., 2) ab (Lab units) of the most probable bin."""
  return jnp.asarray(bins, jnp.float32)[jnp.argmax(logits, axis=-1)]


def decode_mean(logits: jax.Array, bins: jax.Array) -> jax.Array:
  """(..., Q) logits -> (..., 2) expected ab (Lab units) under the predicted distribution."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return probs @ jnp.asarray(bins, jnp.float32)


def annealed_mean(logits: jax.Array, bins: jax.Array,
                  temperature: float = DEFAULT_TEMPERATURE) -> jax.Array:
  """Zhang et al.'s annealed mean (Eq. 5): the mean of the distribution re-normalised at
  `temperature` (probabilities ** (1 / T)); T = 1 is the mean, T -> 0 the mode. (..., 2) Lab.

  A Python `temperature` of 0 returns `decode_mode`.
  """
  if isinstance(temperature, (int, float)) and temperature == 0:
    return decode_mode(logits, bins)
  # p ** (1/T) renormalised equals softmax(logits / T): log p and logits differ by a constant.
  return decode_mean(logits.astype(jnp.float32) / temperature, bins)


def logits_to_ab_norm(logits: jax.Array, bins: jax.Array, size: tuple[int, int],
                      temperature: float = DEFAULT_TEMPERATURE) -> jax.Array:
  """(B, h, w, Q) logits -> (B, H, W, 2) normalised ab (ab / 110) of the annealed mean,
  bilinearly upsampled to `size` = (H, W); what a classification colorizer shows."""
  ab = lab.normalize_ab(annealed_mean(logits, bins, temperature))
  return jax.image.resize(ab, (ab.shape[0], *size, 2), method="bilinear")
