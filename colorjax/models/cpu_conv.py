"""2-D convolutions as matmuls with hand-written gradients, for XLA's CPU backend.

XLA's CPU convolution runs its gradients in a slow generic loop, so `layers.conv2d` lowers a
convolution to im2col + one matmul there. Left to autodiff, that lowering has two costs this
module removes:

* The input gradient of im2col is a sum of kh * kw padded, strided scatters of the patch
  gradient ("col2im"), which XLA fuses into one slow loop (a few percent of the pix2pix step
  each). Here it is the transposed convolution it is mathematically: split by output phase
  (u mod stride), each phase is a stride-1 correlation of the output gradient with the kernel
  taps of that phase, i.e. im2col + matmul again (the sub-pixel view of strided convolution,
  Shi et al. 2016, "Real-time single image and video super-resolution using an efficient
  sub-pixel convolutional neural network"; Dumoulin & Visin 2016, "A guide to convolution
  arithmetic for deep learning").
* Kernel taps that only ever read padding (the 4x4 stride-2 convolutions of a U-Net's innermost
  levels, at 2x2 and 1x1, read mostly padding) are left out of the matmul; their gradient is 0.

`conv2d(x, kernel, strides, padding, dilation)` is the convolution (NHWC x HWIO, explicit
padding pairs); its VJP is `conv2d_transpose` (the linear map's transpose in x) and a weight
gradient `patches^T @ dy`. `conv2d_transpose` has a VJP too (`conv2d` of the cotangent), so
second derivatives (gradient penalties) stay matmuls. `conv_transpose_2x` is Flax's
`ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")` written as the transpose of a
4x4 stride-2 padding-1 convolution with the kernel flipped.

A transposed convolution is computed per phase ("phases": s * s matmuls over exactly the output
positions of each phase) or, where every phase reads the same number of consecutive taps and the
output is large, as one matmul over a shared grid one row/column larger with the phases' weights
side by side ("combined": fewer, wider matmuls and s * s times fewer im2col copies, at
((H + 1) / H) ** 2 the multiply-adds), as pix2pix's transposed convolutions were computed here
before (`layers.ConvTranspose2x`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp

# "combined" transposed convolutions only where their extra row and column cost at most this
# fraction of extra multiply-adds: ((H + 1) / H) ** 2 - 1 <= 0.27 means H >= 8. Below that, the
# per-phase matmuls do fewer multiply-adds (up to 4x fewer at H = 1) for the same copies.
COMBINED_MAX_WASTE = 0.27


@dataclasses.dataclass(frozen=True)
class _Axis:
  """One spatial axis of a convolution: input size n, kernel k, stride s, dilation d, padding
  (lo, hi); output t reads input s * t + d * i - lo through tap i."""
  n: int
  k: int
  s: int
  d: int
  lo: int
  hi: int

  @property
  def out(self) -> int:
    return (self.n + self.lo + self.hi - (self.k - 1) * self.d - 1) // self.s + 1

  @property
  def taps(self) -> tuple[int, ...]:
    """Taps that read at least one input element (the rest only ever read padding)."""
    return tuple(i for i in range(self.k)
                 if any(0 <= self.s * t + self.d * i - self.lo < self.n for t in range(self.out)))

  @property
  def num_phases(self) -> int:
    return self.s

  def phase_rows(self) -> int:
    """Rows per phase of the transposed convolution (ceil(n / s); the last may be cropped)."""
    return -(-self.n // self.s)

  def phase_taps(self, r: int) -> tuple[tuple[int, int], ...]:
    """(tap, offset c) pairs feeding input rows u = s * q + r: they read output q + c."""
    pairs = []
    for i in self.taps:
      if (self.d * i - self.lo - r) % self.s == 0:
        pairs.append((i, (r + self.lo - self.d * i) // self.s))
    return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class _Geometry:
  """A 2-D convolution's static shape information (hashable: a custom_vjp static argument)."""
  h: _Axis
  w: _Axis

  @property
  def taps(self) -> tuple[tuple[int, int], ...]:
    return tuple((i, j) for i in self.h.taps for j in self.w.taps)


def _geometry(shape: Sequence[int], kernel_shape: Sequence[int], strides: Sequence[int],
              padding: Sequence[tuple[int, int]], dilation: Sequence[int]) -> _Geometry:
  return _Geometry(*(_Axis(shape[1 + a], kernel_shape[a], strides[a], dilation[a],
                           *padding[a]) for a in range(2)))


def _kernel_rows(kernel: jax.Array, taps: Sequence[tuple[int, int]]) -> jax.Array:
  """kernel (kh, kw, C_in, C_out) -> (len(taps) * C_in, C_out), taps in the given order.
  A reshape (no copy) when all taps are used."""
  kh, kw, c_in, c_out = kernel.shape
  if len(taps) == kh * kw:
    return kernel.reshape(kh * kw * c_in, c_out)
  rows_h = sorted({i for i, _ in taps})
  rows_w = sorted({j for _, j in taps})
  if len(taps) == len(rows_h) * len(rows_w) and _consecutive(rows_h) and _consecutive(rows_w):
    block = kernel[rows_h[0]:rows_h[-1] + 1, rows_w[0]:rows_w[-1] + 1]
    return block.reshape(-1, c_out)
  return jnp.stack([kernel[i, j] for i, j in taps]).reshape(-1, c_out)


def _consecutive(values: Sequence[int]) -> bool:
  return list(values) == list(range(values[0], values[0] + len(values)))


def _patches(x: jax.Array, g: _Geometry) -> jax.Array:
  """im2col: (B, out_h, out_w, len(taps) * C_in), the views of the used taps side by side."""
  x = jax.lax.pad(x, jnp.zeros((), x.dtype),
                  ((0, 0, 0), (g.h.lo, g.h.hi, 0), (g.w.lo, g.w.hi, 0), (0, 0, 0)))
  views = [jax.lax.slice(x, (0, g.h.d * i, g.w.d * j, 0),
                         (x.shape[0], g.h.d * i + g.h.s * (g.h.out - 1) + 1,
                          g.w.d * j + g.w.s * (g.w.out - 1) + 1, x.shape[3]),
                         (1, g.h.s, g.w.s, 1))
           for i, j in g.taps]
  return jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]


def _weight_grad(patches: jax.Array, dy: jax.Array, g: _Geometry,
                 kernel_shape: Sequence[int]) -> jax.Array:
  """dL/dkernel = patches^T @ dy, scattered back to (kh, kw, C_in, C_out); unused taps get 0."""
  kh, kw, c_in, c_out = kernel_shape
  # XLA copies the transpose of the (M, K) patch matrix before this matmul. Computing
  # (dy^T @ patches)^T instead runs the matmul 2-3x faster alone, but the transposed result
  # is then read with a stride by every optimizer fusion, and the whole pix2pix step got slower
  # (benchmarks/conv_variants.py, 32 px): so the plain form.
  rows = jax.lax.dot_general(patches, dy, (((0, 1, 2), (0, 1, 2)), ((), ())))
  taps = g.taps
  if len(taps) == kh * kw:
    return rows.reshape(kernel_shape)
  rows = rows.reshape(len(g.h.taps), len(g.w.taps), c_in, c_out)
  h0, w0 = g.h.taps[0], g.w.taps[0]
  if _consecutive(g.h.taps) and _consecutive(g.w.taps):
    return jnp.pad(rows, ((h0, kh - h0 - len(g.h.taps)), (w0, kw - w0 - len(g.w.taps)),
                          (0, 0), (0, 0)))
  full = jnp.zeros(kernel_shape, rows.dtype)
  for a, i in enumerate(g.h.taps):
    for b, j in enumerate(g.w.taps):
      full = full.at[i, j].set(rows[a, b])
  return full


def _forward(x: jax.Array, kernel: jax.Array, g: _Geometry) -> tuple[jax.Array, jax.Array]:
  patches = _patches(x, g)
  return patches @ _kernel_rows(kernel, g.taps), patches


def _shifted(y: jax.Array, offsets_h: Sequence[int], offsets_w: Sequence[int], rows: int,
             cols: int) -> tuple[jax.Array, int, int]:
  """y zero-padded so that rows q + c (q < rows, c in offsets_h) and likewise columns are all
  inside; returns (padded y, row shift, column shift) to add to q + c."""
  pad_h = (max(0, -min(offsets_h)), max(0, rows - 1 + max(offsets_h) - (y.shape[1] - 1)))
  pad_w = (max(0, -min(offsets_w)), max(0, cols - 1 + max(offsets_w) - (y.shape[2] - 1)))
  y = jnp.pad(y, ((0, 0), pad_h, pad_w, (0, 0)))
  return y, pad_h[0], pad_w[0]


def _transpose_matmul(patches: jax.Array, kernel: jax.Array,
                      taps: Sequence[tuple[int, int]]) -> jax.Array:
  """patches (..., T * C_out) times the taps' kernel blocks transposed -> (..., C_in)."""
  kh, kw, c_in, c_out = kernel.shape
  blocks = jnp.stack([kernel[i, j] for i, j in taps])  # (T, C_in, C_out)
  lhs = patches.reshape(*patches.shape[:-1], len(taps), c_out)
  nd = lhs.ndim
  return jax.lax.dot_general(lhs, blocks, (((nd - 2, nd - 1), (0, 2)), ((), ())))


def _combined_layout(axis: _Axis) -> tuple[int, ...] | None:
  """Per phase, the first offset c0 when every phase reads the same number of consecutive
  offsets, one tap each; None otherwise."""
  starts, length = [], None
  for r in range(axis.s):
    offsets = sorted(c for _, c in axis.phase_taps(r))
    if not offsets or not _consecutive(offsets) or (length is not None and len(offsets) != length):
      return None
    starts.append(offsets[0])
    length = len(offsets)
  return tuple(starts)


def _transpose(dy: jax.Array, kernel: jax.Array, g: _Geometry) -> jax.Array:
  """The transpose in x of the convolution: (B, out_h, out_w, C_out) -> (B, n_h, n_w, C_in)."""
  batch, c_in = dy.shape[0], kernel.shape[2]
  rows, cols = g.h.phase_rows(), g.w.phase_rows()
  starts_h, starts_w = _combined_layout(g.h), _combined_layout(g.w)
  phases = [(a, b) for a in range(g.h.s) for b in range(g.w.s)]
  waste = (rows + max(starts_h or [0]) - min(starts_h or [0])) * (
      cols + max(starts_w or [0]) - min(starts_w or [0])) / (rows * cols) - 1
  if len(phases) > 1 and starts_h is not None and starts_w is not None and (
      waste <= COMBINED_MAX_WASTE):
    out = _transpose_combined(dy, kernel, g, starts_h, starts_w, rows, cols)
  else:
    out = []
    for a, b in phases:
      taps_h, taps_w = g.h.phase_taps(a), g.w.phase_taps(b)
      if not taps_h or not taps_w:
        out.append(jnp.zeros((batch, rows, cols, c_in), dy.dtype))
        continue
      padded, sh, sw = _shifted(dy, [c for _, c in taps_h], [c for _, c in taps_w], rows, cols)
      views = [padded[:, sh + ci:sh + ci + rows, sw + cj:sw + cj + cols]
               for _, ci in taps_h for _, cj in taps_w]
      patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
      out.append(_transpose_matmul(patches, kernel, [(i, j) for i, _ in taps_h
                                                     for j, _ in taps_w]))
  if len(phases) == 1:
    full = out[0]
  else:  # Interleave: row s * q + a, column s * p + b holds phase (a, b)'s (q, p).
    full = jnp.stack(out, axis=3).reshape(batch, rows, cols, g.h.s, g.w.s, c_in)
    full = full.transpose(0, 1, 3, 2, 4, 5).reshape(batch, rows * g.h.s, cols * g.w.s, c_in)
  return full[:, :g.h.n, :g.w.n]


def _transpose_combined(dy: jax.Array, kernel: jax.Array, g: _Geometry,
                        starts_h: Sequence[int], starts_w: Sequence[int], rows: int,
                        cols: int) -> list[jax.Array]:
  """All phases from one matmul over a grid covering every phase's windows (see module doc)."""
  len_h, len_w = len(g.h.phase_taps(0)), len(g.w.phase_taps(0))
  lo_h, lo_w = min(starts_h), min(starts_w)
  grid_h, grid_w = rows + max(starts_h) - lo_h, cols + max(starts_w) - lo_w
  offsets_h = [lo_h + q for q in range(grid_h + len_h - 1)]
  offsets_w = [lo_w + p for p in range(grid_w + len_w - 1)]
  padded, sh, sw = _shifted(dy, offsets_h, offsets_w, 1, 1)
  views = [padded[:, sh + lo_h + m:sh + lo_h + m + grid_h, sw + lo_w + n:sw + lo_w + n + grid_w]
           for m in range(len_h) for n in range(len_w)]
  patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
  # Weights of phase (a, b) for window tap (m, n): the kernel tap whose offset is c0 + m.
  blocks = []
  for a in range(g.h.s):
    by_offset_h = {c: i for i, c in g.h.phase_taps(a)}
    for b in range(g.w.s):
      by_offset_w = {c: j for j, c in g.w.phase_taps(b)}
      blocks.append(jnp.stack([kernel[by_offset_h[starts_h[a] + m], by_offset_w[starts_w[b] + n]]
                               for m in range(len_h) for n in range(len_w)]))
  weights = jnp.stack(blocks, axis=1)  # (len_h * len_w, phases, C_in, C_out)
  t, c_out = len_h * len_w, kernel.shape[3]
  lhs = patches.reshape(*patches.shape[:-1], t, c_out)
  y = jax.lax.dot_general(lhs, weights, (((3, 4), (0, 3)), ((), ())))  # (B, gh, gw, P, C_in)
  out = []
  for k, (a, b) in enumerate((a, b) for a in range(g.h.s) for b in range(g.w.s)):
    oh, ow = starts_h[a] - lo_h, starts_w[b] - lo_w
    out.append(y[:, oh:oh + rows, ow:ow + cols, k])
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, kernel: jax.Array, g: _Geometry) -> jax.Array:
  return _forward(x, kernel, g)[0]


def _conv_fwd(x, kernel, g):
  y, patches = _forward(x, kernel, g)
  return y, (patches, kernel)


def _conv_bwd(g, residuals, dy):
  patches, kernel = residuals
  return _conv_t(dy, kernel, g), _weight_grad(patches, dy, g, kernel.shape)


_conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_t(y: jax.Array, kernel: jax.Array, g: _Geometry) -> jax.Array:
  return _transpose(y, kernel, g)


def _conv_t_fwd(y, kernel, g):
  return _transpose(y, kernel, g), (y, kernel)


def _conv_t_bwd(g, residuals, dx):
  y, kernel = residuals
  dy, patches = _forward(dx, kernel, g)
  return dy, _weight_grad(patches, y, g, kernel.shape)


_conv_t.defvjp(_conv_t_fwd, _conv_t_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
           padding: Sequence[tuple[int, int]], dilation: Sequence[int] = (1, 1)) -> jax.Array:
  """NHWC x HWIO convolution with explicit padding pairs, as matmuls forward and backward."""
  return _conv(x, kernel, _geometry(x.shape, kernel.shape, strides, padding, dilation))


def conv2d_transpose(y: jax.Array, kernel: jax.Array, input_shape: Sequence[int],
                     strides: Sequence[int], padding: Sequence[tuple[int, int]],
                     dilation: Sequence[int] = (1, 1)) -> jax.Array:
  """The transpose in x of `conv2d(x, kernel, ...)` for x of `input_shape`, applied to y."""
  return _conv_t(y, kernel, _geometry(input_shape, kernel.shape, strides, padding, dilation))


def conv_transpose_2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Flax's 4x4 stride-2 SAME `ConvTranspose` (kernel (4, 4, C_in, C_out), not flipped).

  Output row 2m + a reads input rows m - 1 + a and m + a through taps a and 2 + a: that is the
  transpose of a 4x4 stride-2 padding-1 convolution (from 2H to H rows) whose kernel is this
  one flipped in both spatial axes, with C_in and C_out swapped.
  """
  batch, height, width, _ = x.shape
  flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # (4, 4, C_out, C_in) of the conv.
  return conv2d_transpose(x, flipped, (batch, 2 * height, 2 * width, kernel.shape[3]),
                          (2, 2), ((1, 1), (1, 1)))
