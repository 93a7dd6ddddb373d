"""The colour prior over ab bins and the class-rebalancing weights (Zhang, Isola & Efros 2016,
Sec. 2.2): counted on the accelerator, smoothed, turned into weights, saved and loaded.

Units: ab in Lab units (roughly [-110, 110]), not the models' normalised ab / 110: multiply
normalised values by `lab.AB_SCALE` first.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.color import lab
from colorjax.color.gamut import DEFAULT_GRID, validate_bins
from colorjax.color.soft_encoding import DEFAULT_SIGMA, nearest_bin, squared_distances

DEFAULT_LAMBDA = 0.5  # Zhang et al.'s mix of the prior with the uniform distribution.
# Images whose largest |a| or |b| is below this are treated as grayscale when estimating the
# prior: they carry no colour statistics, only a spike at the neutral bin.
CHROMA_THRESHOLD = 5.0


def accumulate_bin_counts(counts: jax.Array, rgb_uint8_batch: jax.Array,
                          bins: jax.Array) -> jax.Array:
  """Adds the nearest-bin histogram of a uint8 RGB batch (B, H, W, 3) to `counts` (Q,), float32.

  float32 counts are exact up to 2^24 per bin; for whole datasets sum per-batch counts in
  float64 on the host, as `estimate_prior` does.

  Images with no chroma (max |a|, |b| below `CHROMA_THRESHOLD`) are skipped. The images are
  processed one at a time so the (H, W, Q) distance array is the largest intermediate.
  """
  def image_counts(rgb: jax.Array) -> jax.Array:
    ab = lab.rgb_to_lab(rgb.astype(jnp.float32) / 255.0)[..., 1:]
    has_chroma = jnp.max(jnp.abs(ab)) >= CHROMA_THRESHOLD
    index = nearest_bin(ab, bins).reshape(-1)
    return jnp.bincount(index, length=len(bins)).astype(jnp.float32) * has_chroma

  per_image = jax.lax.map(image_counts, rgb_uint8_batch)
  return counts.astype(jnp.float32) + jnp.sum(per_image, axis=0)


def prior_from_counts(counts: jax.Array) -> jax.Array:
  """Normalises bin counts (Q,) to a distribution (all zeros if there are no counts)."""
  counts = jnp.asarray(counts, jnp.float32)
  return counts / jnp.maximum(jnp.sum(counts), 1e-12)


def smooth_prior(p: jax.Array, bins: jax.Array, sigma: float = DEFAULT_SIGMA) -> jax.Array:
  """Smooths a distribution over bins with a Gaussian (std `sigma`, Lab units) over the centres.

  Each bin spreads its mass over the bins in proportion to the Gaussian of their distance, so
  the total mass is kept (the kernel's columns are normalised over the bins that exist).
  """
  kernel = jnp.exp(-squared_distances(jnp.asarray(bins, jnp.float32), bins) /
                   (2.0 * sigma * sigma))
  kernel = kernel / jnp.sum(kernel, axis=0, keepdims=True)
  return kernel @ jnp.asarray(p, jnp.float32)


def rebalancing_weights(p: jax.Array, lam: float = DEFAULT_LAMBDA) -> jax.Array:
  """Zhang et al.'s class weights (Eq. 4): w ∝ ((1 - lam) p + lam / Q)^-1 with E_p[w] = 1."""
  p = jnp.asarray(p, jnp.float32)
  w = 1.0 / ((1.0 - lam) * p + lam / p.shape[-1])
  return w / jnp.sum(p * w)


@dataclasses.dataclass(frozen=True)
class Prior:
  """An estimated colour prior and its rebalancing weights, as stored by `save_prior`.

  Attributes:
    counts: (Q,) raw nearest-bin pixel counts, float64.
    prior: (Q,) smoothed, normalised distribution.
    weights: (Q,) rebalancing weights for `rebalanced_cross_entropy`.
    bins: (Q, 2) bin centres the counts refer to.
    grid: cell size of the bins (informational for user-supplied bins).
    lam: mixing weight of the uniform distribution in the weights.
    sigma: std of the Gaussian smoothing of the prior.
  """
  counts: np.ndarray
  prior: np.ndarray
  weights: np.ndarray
  bins: np.ndarray
  grid: float
  lam: float
  sigma: float


def prior_from_bin_counts(counts: np.ndarray, bins: np.ndarray, grid: float = DEFAULT_GRID,
                          lam: float = DEFAULT_LAMBDA, sigma: float = DEFAULT_SIGMA) -> Prior:
  """Counts (Q,) -> `Prior` (normalise, smooth, rebalancing weights)."""
  counts = np.asarray(counts, np.float64)
  if counts.shape != (len(bins),) or counts.sum() <= 0:
    raise ValueError(f"need positive counts of shape ({len(bins)},); got shape {counts.shape} "
                     f"with total {counts.sum()}")
  prior = smooth_prior(prior_from_counts(counts), bins, sigma)
  weights = rebalancing_weights(prior, lam)
  return Prior(counts=counts, prior=np.asarray(prior), weights=np.asarray(weights),
               bins=np.asarray(bins, np.float32), grid=float(grid), lam=float(lam),
               sigma=float(sigma))


def estimate_prior(rgb_uint8_batches: Iterable[np.ndarray], bins: np.ndarray,
                   grid: float = DEFAULT_GRID, lam: float = DEFAULT_LAMBDA,
                   sigma: float = DEFAULT_SIGMA) -> Prior:
  """Accumulates bin counts over uint8 RGB batches (B, H, W, 3) and returns the `Prior`."""
  bins_j = jnp.asarray(bins, jnp.float32)
  zeros = jnp.zeros((len(bins),), jnp.float32)
  step = jax.jit(accumulate_bin_counts)
  # Per-batch counts are exact in float32; the running total (up to ~1e11 pixels for ImageNet
  # at 256 px) is kept in float64 on the host.
  counts = np.zeros((len(bins),), np.float64)
  for batch in rgb_uint8_batches:
    counts += np.asarray(step(zeros, jnp.asarray(batch), bins_j), np.float64)
  return prior_from_bin_counts(counts, bins, grid, lam, sigma)


def save_prior(path: str, prior: Prior) -> None:
  """Writes a `Prior` to an .npz file."""
  with open(path, "wb") as f:
    np.savez(f, counts=prior.counts, prior=prior.prior, weights=prior.weights, bins=prior.bins,
             grid=prior.grid, lam=prior.lam, sigma=prior.sigma)


def load_prior(path: str) -> Prior:
  """Reads a `Prior` written by `save_prior`, checking that its arrays agree in Q."""
  with np.load(path, allow_pickle=False) as data:
    missing = sorted({f.name for f in dataclasses.fields(Prior)} - set(data.files))
    if missing:
      raise ValueError(f"{path!r} is not a colour prior file: missing {missing}")
    bins = validate_bins(data["bins"], source=f"bins in {path!r}")
    arrays = {name: np.asarray(data[name], np.float64 if name == "counts" else np.float32)
              for name in ("counts", "prior", "weights")}
    scalars = {name: float(data[name]) for name in ("grid", "lam", "sigma")}
  for name, array in arrays.items():
    if array.shape != (len(bins),):
      raise ValueError(f"{path!r}: {name} has shape {array.shape}, expected ({len(bins)},)")
  return Prior(bins=bins, **arrays, **scalars)
