"""Local colour hints (Zhang, Zhu, Isola, Geng, Lin, Yu & Efros 2017, "Real-Time User-Guided
Image Colorization with Learned Deep Priors"): the maths of simulating and placing them.

A model trained with hints (`config.model.hints = True`) takes, instead of normalised L alone,

  generator input = concat([l_norm, hint_ab_norm, hint_mask], axis=-1)    # (B, H, W, 4)

at the render resolution: `hint_ab_norm` is ab / 110 at hinted pixels and 0 elsewhere, and
`hint_mask` is 1 where a pixel is hinted and 0 elsewhere. With no hint the two extra channels
are all zero and the model colorizes automatically (`automatic_input`).

Training simulates hints from the truth, on device inside the jitted step and deterministic
for the step's RNG key (`simulate`), as Zhang et al. 2017 do (their code:
richzhang/colorization-pytorch, `util/util.py::add_color_patches_rand_gt`):

* the number of hints is geometric, P(n) = (1 - p)^n p with p = 1/8 (mean 7): one batch image
  in eight has no hint, so the same model keeps colorizing automatically;
* each hint is a square patch whose side is drawn uniformly from 1-9 pixels, its corner drawn
  from a normal centred on the image with a standard deviation of a quarter of the free range,
  clipped to the image (the paper's "normal" sampling: users click on the subject more often
  than on the border);
* the patch is filled with the mean ab of the truth over it, and later patches cover earlier
  ones where they overlap (the reference code writes them in order).

Evaluation reveals a fixed number of hints the same way (`simulate_count`); user clicks become
the same maps with `rasterize`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from colorjax.color import lab

HINT_CHANNELS = 3  # hint ab (2) + mask (1), after the L channel.
# The side, in render pixels, of the square a user hint covers: within the 1-9 px of training,
# small enough to sit inside the object clicked on at 32 px.
USER_PATCH_SIZE = 3


@dataclasses.dataclass(frozen=True)
class HintConfig:
  """How training simulates hints (static: closed over by the jitted step).

  Attributes:
    p: the geometric distribution's stop probability; the mean count is (1 - p) / p.
    min_patch, max_patch: the side range of the square patches, in render pixels.
    max_points: the count is truncated here (a fixed-size array under jit); with p = 1/8,
      32 truncates 1.4% of the draws.
  """
  p: float = 0.125
  min_patch: int = 1
  max_patch: int = 9
  max_points: int = 32


def enabled(config: ml_collections.ConfigDict) -> bool:
  """Whether a config's generator takes hints; configs saved before the key read False."""
  return bool(config.model.get("hints", False))


def from_config(config: ml_collections.ConfigDict) -> HintConfig | None:
  """The config's hint simulation, or None for a model without hint inputs."""
  if not enabled(config):
    return None
  options = config.get("hints", None)
  if options is None:
    return HintConfig()
  fields = HintConfig.__dataclass_fields__
  return HintConfig(**{k: options[k] for k in fields if k in options})


def input_channels(config: ml_collections.ConfigDict) -> int:
  """Channels of the generator's input: 1 (L), or 4 (L, hint ab, mask) with hints."""
  return 1 + HINT_CHANNELS if enabled(config) else 1


def generator_input(l_norm: jax.Array, hint_ab: jax.Array, mask: jax.Array) -> jax.Array:
  """The contract: concat([l_norm, hint_ab_norm, hint_mask], -1), (..., H, W, 4)."""
  return jnp.concatenate([l_norm, hint_ab.astype(l_norm.dtype), mask.astype(l_norm.dtype)],
                         axis=-1)


def automatic_input(l_norm: jax.Array) -> jax.Array:
  """The input of a hint model with no hint: L and three zero channels."""
  zeros = jnp.zeros(l_norm.shape[:-1] + (HINT_CHANNELS,), l_norm.dtype)
  return jnp.concatenate([l_norm, zeros], axis=-1)


# ------------------------------------------------------------------------------------------
# Simulated hints from the truth.
# ------------------------------------------------------------------------------------------
def _patches(rng: jax.Array, height: int, width: int, num: int,
             cfg: HintConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sizes, rows, cols) of `num` square patches: sides uniform in [min_patch, max_patch],
  corners normal around the centre (std a quarter of the free range), clipped inside."""
  size_rng, row_rng, col_rng = jax.random.split(rng, 3)
  sizes = jax.random.randint(size_rng, (num,), cfg.min_patch, cfg.max_patch + 1)
  sizes = jnp.minimum(sizes, min(height, width))

  def corner(key, extent):
    free = (extent - sizes + 1).astype(jnp.float32)
    pos = free / 2 + free / 4 * jax.random.normal(key, (num,))
    return jnp.clip(pos, 0, extent - sizes).astype(jnp.int32)
  return sizes, corner(row_rng, height), corner(col_rng, width)


def _paint(true_ab: jax.Array, sizes: jax.Array, rows: jax.Array, cols: jax.Array,
           active: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One image's (hint ab (H, W, 2), mask (H, W, 1)): each active patch filled with the mean
  of `true_ab` over it, in order, later patches over earlier ones (a scan over the patches:
  memory stays one image's, whatever their number)."""
  height, width, _ = true_ab.shape
  truth = true_ab.astype(jnp.float32)

  def paint_one(carry, patch):
    hint_ab, mask = carry
    size, row, col, on = patch
    in_rows = (jnp.arange(height) >= row) & (jnp.arange(height) < row + size)
    in_cols = (jnp.arange(width) >= col) & (jnp.arange(width) < col + size)
    mean = jnp.einsum("h,hwc,w->c", in_rows.astype(jnp.float32), truth,
                      in_cols.astype(jnp.float32)) / (size * size).astype(jnp.float32)
    box = (in_rows[:, None] & in_cols[None, :] & on)[..., None]
    return (jnp.where(box, mean, hint_ab), mask | box), None

  empty = (jnp.zeros((height, width, 2), jnp.float32), jnp.zeros((height, width, 1), bool))
  (hint_ab, mask), _ = jax.lax.scan(paint_one, empty, (sizes, rows, cols, active))
  return hint_ab, mask.astype(jnp.float32)


def _simulate_one(rng: jax.Array, true_ab: jax.Array, count: jax.Array, num: int,
                  cfg: HintConfig) -> tuple[jax.Array, jax.Array]:
  sizes, rows, cols = _patches(rng, true_ab.shape[0], true_ab.shape[1], num, cfg)
  return _paint(true_ab, sizes, rows, cols, jnp.arange(num) < count)


def geometric_counts(rng: jax.Array, batch: int, cfg: HintConfig) -> jax.Array:
  """(B,) hint counts with P(n) = (1 - p)^n p, truncated at `max_points`: n = floor(log u /
  log(1 - p)) has P(n >= k) = (1 - p)^k, the reference code's `while rand() < 1 - p` loop."""
  u = jax.random.uniform(rng, (batch,), minval=jnp.finfo(jnp.float32).tiny, maxval=1.0)
  n = jnp.floor(jnp.log(u) / np.log1p(-cfg.p))
  return jnp.minimum(n, cfg.max_points).astype(jnp.int32)


def simulate_with_counts(rng: jax.Array, true_ab: jax.Array, counts: jax.Array, num: int,
                         cfg: HintConfig) -> tuple[jax.Array, jax.Array]:
  """(hint ab (B, H, W, 2), mask (B, H, W, 1)) with counts[i] (<= num) patches in image i."""
  keys = jax.random.split(rng, true_ab.shape[0])
  one = lambda key, ab, count: _simulate_one(key, ab, count, num, cfg)
  return jax.vmap(one)(keys, true_ab, counts)


def simulate(rng: jax.Array, true_ab: jax.Array,
             cfg: HintConfig) -> tuple[jax.Array, jax.Array]:
  """Training hints for normalised true ab (B, H, W, 2): a geometric count per image."""
  count_rng, patch_rng = jax.random.split(rng)
  counts = geometric_counts(count_rng, true_ab.shape[0], cfg)
  return simulate_with_counts(patch_rng, true_ab, counts, cfg.max_points, cfg)


def simulate_count(rng: jax.Array, true_ab: jax.Array, num_points: int | jax.Array,
                   cfg: HintConfig, capacity: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Exactly `num_points` hints per image (evaluation by hint count). A traced `num_points`
  needs `capacity`, a static upper bound, so that one compilation serves every count."""
  capacity = max(int(num_points if capacity is None else capacity), 1)
  counts = jnp.full((true_ab.shape[0],), num_points, jnp.int32)
  return simulate_with_counts(rng, true_ab, counts, capacity, cfg)


# ------------------------------------------------------------------------------------------
# User hints.
# ------------------------------------------------------------------------------------------
def rasterize(points: Sequence[tuple[float, float, float, float]], image_hw: tuple[int, int],
              render_size: int,
              patch_size: int = USER_PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """User hints -> (hint ab (R, R, 2), mask (R, R, 1)) at the render resolution.

  `points` are (x, y, a, b): x, y in the full-resolution image's pixel coordinates (x to the
  right, y down, pixel centres at integers), a, b in Lab units. Each becomes a `patch_size`
  square of render pixels centred on the point's render pixel (inside the image), filled with
  its normalised ab (ab / 110); later points cover earlier ones, as in simulation.
  """
  height, width = image_hw
  hint_ab = np.zeros((render_size, render_size, 2), np.float32)
  mask = np.zeros((render_size, render_size, 1), np.float32)
  size = max(1, min(int(patch_size), render_size))
  for x, y, a, b in points:
    if not (0 <= x < width and 0 <= y < height):
      raise ValueError(f"hint at (x={x}, y={y}) is outside the {width}x{height} image")
    col = min(int((x + 0.5) * render_size / width), render_size - 1)
    row = min(int((y + 0.5) * render_size / height), render_size - 1)
    top = int(np.clip(row - (size - 1) // 2, 0, render_size - size))
    left = int(np.clip(col - (size - 1) // 2, 0, render_size - size))
    hint_ab[top:top + size, left:left + size] = (a / lab.AB_SCALE, b / lab.AB_SCALE)
    mask[top:top + size, left:left + size] = 1.0
  return hint_ab, mask
