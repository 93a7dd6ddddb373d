"""Quantised ab space for classification colorizers ("Colorful Image Colorization", Zhang et al.
ECCV 2016): bins, soft encoding, class-rebalanced cross-entropy, decoding and the colour prior.

Bins. The ab plane is cut into square cells of side `grid` (Lab units) centred on the multiples
of `grid`: a colour belongs to the cell `floor(ab / grid + 1/2)`, i.e. ab rounded to the nearest
multiple of `grid` (halves rounded up). The bins are the cells that at least one of the 256^3
8-bit sRGB colours (D65, scikit-image's Lab) falls in, listed in lexicographic (a, b) order, each
represented by its centre. This gives Q = 261 bins at grid 10 (Zhang et al. keep Q = 313 bins at
grid 10 with a different in-gamut test; pass their file to `load_bins` to use them). Cells with
edges on the multiples of `grid` (`floor(ab / grid)`) would give 268 bins at grid 10.
Because a colour's own cell is a bin, every 8-bit sRGB colour lies within the cell's
half-diagonal `grid * sqrt(2) / 2` of a bin centre.

Units. Everything here takes ab in Lab units (roughly [-110, 110]), not the models' normalised
ab / 110: multiply the normalised targets by `lab.AB_SCALE` before calling the loss.

Memory. The soft encoding is sparse: `soft_encode` returns the indices and weights of the k
nearest bins, (..., k) each, and the loss gathers the k log-probabilities it needs instead of
building a dense (..., Q) target (k * Q floats per pixel if built from one-hot vectors). The
(..., Q) squared distances to the bins are still formed once, the same size as the logits. On
2 CPU cores, loss + gradient for a batch of 4 at 256 px with the loss at 64 x 64 took 52 ms per
image and 52 MiB of XLA temporaries, against 102 ms and 131 MiB with a dense target
(benchmarks/soft_encoding.py).

Everything is jnp and usable inside `jax.jit` except the host-side helpers: `gamut_bins`,
`load_bins`, `validate_bins`, `estimate_prior`, `prior_from_bin_counts`, `save_prior`,
`load_prior`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.color import lab

# Zhang et al.'s soft-encoding and prior hyper-parameters.
DEFAULT_GRID = 10
DEFAULT_K = 5
DEFAULT_SIGMA = 5.0
DEFAULT_LAMBDA = 0.5
DEFAULT_TEMPERATURE = 0.38
# Images whose largest |a| or |b| is below this are treated as grayscale when estimating the
# prior: they carry no colour statistics, only a spike at the neutral bin.
CHROMA_THRESHOLD = 5.0
# No 8-bit sRGB colour has |a| or |b| above ~108; bins beyond this are certainly malformed.
_MAX_ABS_AB = 128.0


# ----------------------------------------------------------------------------------------------
# Bins.


def _srgb_ab_for_red(red: int) -> np.ndarray:
  """ab (float64, (65536, 2)) of the 8-bit sRGB colours with the given red value."""
  levels = np.arange(256) / 255.0
  linear = np.where(levels > 0.04045, ((levels + 0.055) / 1.055) ** 2.4, levels / 12.92)
  # XYZ / white is linear in (R, G, B): add per-channel tables rather than a matmul per colour.
  to_xyz = lab._RGB_TO_XYZ_F64 / lab._WHITE_D65.astype(np.float64)[:, None]
  tables = linear[:, None, None] * to_xyz.T[None]  # (level, channel, xyz)
  xyz = tables[red, 0] + tables[:, None, 1] + tables[None, :, 2]  # (green, blue, xyz)
  f = np.where(xyz > lab._EPSILON, np.cbrt(xyz), lab._KAPPA * xyz + 16.0 / 116.0)
  ab = np.stack([500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1)
  return ab.reshape(-1, 2)


def srgb_gamut_ab() -> Iterable[np.ndarray]:
  """Yields the ab values of all 256^3 8-bit sRGB colours, 65536 at a time (by red value)."""
  for red in range(256):
    yield _srgb_ab_for_red(red)


def cell_of(ab: np.ndarray, grid: float) -> np.ndarray:
  """Integer cell coordinates (..., 2) of ab values: ab rounded to multiples of `grid`."""
  return np.floor(np.asarray(ab, np.float64) / grid + 0.5).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _gamut_bins_cached(grid: float) -> np.ndarray:
  # Mark occupied cells in a dense boolean table (sRGB's |a|, |b| stay below _MAX_ABS_AB);
  # much faster than collecting unique rows.
  offset = int(np.ceil(_MAX_ABS_AB / grid)) + 1
  occupied = np.zeros((2 * offset + 1, 2 * offset + 1), bool)
  for ab in srgb_gamut_ab():
    cells = cell_of(ab, grid) + offset
    occupied[cells[:, 0], cells[:, 1]] = True
  # np.argwhere lists cells in lexicographic (a, b) order.
  bins = ((np.argwhere(occupied) - offset) * grid).astype(np.float32)
  bins.setflags(write=False)  # Cached and shared: callers must not modify it.
  return bins


def gamut_bins(grid: float = DEFAULT_GRID) -> np.ndarray:
  """Centres (Q, 2) of the grid cells that contain some 8-bit sRGB colour (see module doc).

  The first call for a grid converts all 256^3 colours (about 1.5 s); results are cached.
  """
  if not grid > 0:
    raise ValueError(f"grid must be positive; got {grid}")
  return _gamut_bins_cached(float(grid))


def validate_bins(bins: np.ndarray, source: str = "bins") -> np.ndarray:
  """Checks that `bins` is a (Q, 2) array of distinct, finite ab centres; returns float32."""
  bins = np.asarray(bins)
  if bins.ndim != 2 or bins.shape[1] != 2 or bins.shape[0] < 2:
    raise ValueError(f"{source}: expected an array of ab bin centres of shape (Q, 2) with Q >= 2; "
                     f"got shape {bins.shape}")
  if not np.issubdtype(bins.dtype, np.number) or np.issubdtype(bins.dtype, np.complexfloating):
    raise ValueError(f"{source}: expected real numbers; got dtype {bins.dtype}")
  bins = bins.astype(np.float32)
  if not np.all(np.isfinite(bins)):
    raise ValueError(f"{source}: bin centres must be finite")
  if np.abs(bins).max() > _MAX_ABS_AB:
    raise ValueError(f"{source}: bin centres must be in Lab units within +-{_MAX_ABS_AB:g} "
                     f"(not normalised ab / {lab.AB_SCALE:g}); largest |value| is "
                     f"{np.abs(bins).max():g}")
  if len(np.unique(bins, axis=0)) != len(bins):
    raise ValueError(f"{source}: bin centres must be distinct")
  return bins


def load_bins(bins_path: str | None, grid: float = DEFAULT_GRID) -> np.ndarray:
  """The ab bins (Q, 2), float32, Lab units.

  Args:
    bins_path: a .npy file holding a (Q, 2) array of bin centres (e.g. Zhang et al.'s
      `pts_in_hull.npy`, Q = 313), or None for `gamut_bins(grid)`.
    grid: cell size of the gamut bins; ignored when `bins_path` is given.
  """
  if bins_path is None:
    return gamut_bins(grid)
  try:
    loaded = np.load(bins_path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read ab bins from {bins_path!r} (expected a .npy file holding a "
                     f"(Q, 2) array): {e}") from e
  return validate_bins(loaded, source=repr(bins_path))


# ----------------------------------------------------------------------------------------------
# Soft encoding and the loss.


def _squared_distances(ab: jax.Array, bins: jax.Array) -> jax.Array:
  """(..., 2), (Q, 2) -> (..., Q) squared Euclidean distances (direct differences, not the
  |x|^2 - 2 x.c + |c|^2 expansion, which loses the small distances to cancellation)."""
  diff = ab[..., None, :].astype(jnp.float32) - jnp.asarray(bins, jnp.float32)
  return jnp.sum(diff * diff, axis=-1)


def soft_encode(ab: jax.Array, bins: jax.Array, k: int = DEFAULT_K,
                sigma: float = DEFAULT_SIGMA) -> tuple[jax.Array, jax.Array]:
  """Sparse soft encoding of ab over the k nearest bins (Zhang et al. Sec. 2.1).

  Args:
    ab: (..., 2) target chroma in Lab units.
    bins: (Q, 2) bin centres.
    k: number of nearest bins that share the weight.
    sigma: standard deviation (Lab units) of the Gaussian on the distance to each bin.

  Returns:
    indices (..., k) int32 of the k nearest bins, nearest first, and their weights (..., k)
    float32, proportional to exp(-d^2 / (2 sigma^2)) and summing to 1. No gradient flows to ab.
  """
  ab = jax.lax.stop_gradient(ab)
  neg_d2, indices = jax.lax.top_k(-_squared_distances(ab, bins), k)
  # A softmax of -d^2 / (2 sigma^2) is the normalised Gaussian, computed without underflow for
  # targets far from every bin.
  weights = jax.nn.softmax(neg_d2 / (2.0 * sigma * sigma), axis=-1)
  # Materialise the small (..., k) outputs. Without the barrier XLA:CPU fuses the (..., Q)
  # distance and top-k work into the loss's consumers of the indices, which made the rebalanced
  # loss 6x slower in benchmarks/soft_encoding.py.
  return jax.lax.optimization_barrier((indices.astype(jnp.int32), weights))


def nearest_bin(ab: jax.Array, bins: jax.Array) -> jax.Array:
  """(..., 2) ab in Lab units -> (...,) int32 index of the nearest bin."""
  return jnp.argmin(_squared_distances(ab, bins), axis=-1).astype(jnp.int32)


def area_downsample(ab: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Averages (B, H, W, C) over non-overlapping blocks to (B, h, w, C); h, w must divide H, W.

  Brings full-resolution ab targets to the logits' resolution (1/4 of the input for zhang_cic),
  where Zhang et al. compute the loss.
  """
  b, height, width, c = ab.shape
  h, w = size
  if height % h or width % w:
    raise ValueError(f"cannot area-downsample {height}x{width} to {h}x{w}: sizes must divide")
  blocks = ab.reshape(b, h, height // h, w, width // w, c)
  return blocks.mean(axis=(2, 4), dtype=jnp.float32)


def rebalanced_cross_entropy(logits: jax.Array, ab_target: jax.Array, bins: jax.Array,
                             class_weights: jax.Array | None, k: int = DEFAULT_K,
                             sigma: float = DEFAULT_SIGMA) -> jax.Array:
  """Class-rebalanced multinomial cross-entropy of Zhang et al. (Eq. 2), mean over pixels.

  Args:
    logits: (B, h, w, Q) unnormalised scores over the bins.
    ab_target: (B, h, w, 2) target chroma in Lab units at the logits' resolution (use
      `area_downsample` on full-size targets).
    bins: (Q, 2) bin centres.
    class_weights: (Q,) rebalancing weights (`rebalancing_weights`); None for no rebalancing.
      Each pixel is weighted by the weight of its target's nearest (heaviest) bin.
    k, sigma: soft-encoding parameters (`soft_encode`).

  Returns:
    A float32 scalar: sum over pixels of weight * CE, divided by the number of pixels (so the
    scale does not depend on the image size; with E_p[w] = 1 it matches the unweighted CE).
  """
  if logits.shape[:-1] != ab_target.shape[:-1]:
    raise ValueError(f"logits {logits.shape} and ab targets {ab_target.shape} must share batch "
                     "and spatial shape; area_downsample the targets to the logits' resolution")
  if logits.shape[-1] != len(bins):
    raise ValueError(f"logits have {logits.shape[-1]} classes but there are {len(bins)} bins")
  indices, weights = soft_encode(ab_target, bins, k, sigma)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  cross_entropy = -jnp.sum(weights * jnp.take_along_axis(log_probs, indices, axis=-1), axis=-1)
  if class_weights is not None:
    cross_entropy = cross_entropy * jnp.asarray(class_weights, jnp.float32)[indices[..., 0]]
  return jnp.mean(cross_entropy)


# ----------------------------------------------------------------------------------------------
# Decoding.


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


# ----------------------------------------------------------------------------------------------
# The colour prior and the rebalancing weights.


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
  kernel = jnp.exp(-_squared_distances(jnp.asarray(bins, jnp.float32), bins) /
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
