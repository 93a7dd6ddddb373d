"""The quantised ab space of classification colorizers: the in-gamut bins ("Colorful Image
Colorization", Zhang, Isola & Efros 2016, Sec. 2.1).

Bins. The ab plane is cut into square cells of side `grid` (Lab units) centred on the multiples
of `grid`: a colour belongs to the cell `floor(ab / grid + 1/2)`, i.e. ab rounded to the nearest
multiple of `grid` (halves rounded up). The bins are the cells that at least one of the 256^3
8-bit sRGB colours (D65, scikit-image's Lab) falls in, listed in lexicographic (a, b) order, each
represented by its centre. This gives Q = 261 bins at grid 10 (Zhang et al. keep Q = 313 bins at
grid 10 with a different in-gamut test; pass their file to `load_bins` to use them). Cells with
edges on the multiples of `grid` (`floor(ab / grid)`) would give 268 bins at grid 10.
Because a colour's own cell is a bin, every 8-bit sRGB colour lies within the cell's
half-diagonal `grid * sqrt(2) / 2` of a bin centre.

Units: ab in Lab units (roughly [-110, 110]), not the models' normalised ab / 110: multiply
normalised values by `lab.AB_SCALE` first. Host-side numpy: the bins are built once, outside
`jax.jit`.
"""

from __future__ import annotations

import functools
from typing import Iterable

import numpy as np

from colorjax.color import lab

DEFAULT_GRID = 10  # Zhang et al.'s cell side, in Lab units.
# No 8-bit sRGB colour has |a| or |b| above ~108; bins beyond this are certainly malformed.
_MAX_ABS_AB = 128.0


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
