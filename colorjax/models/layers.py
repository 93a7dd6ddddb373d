"""Building blocks shared by the generators and discriminators.

* `Conv`: a (transposed) convolution with optional spectral normalisation (Miyato et al. 2018).
  Spectral norm uses `flax.linen.SpectralNorm`, which keeps each kernel's power-iteration vector
  `u` and its estimate `sigma` in the "batch_stats" collection (the same one BatchNorm uses), so
  the trainer's `mutable=["batch_stats"]` covers both. Power iteration advances only when the
  layer is called with `update_stats=True` (pass `train`); the kernel is reshaped to
  (kh * kw * c_in, c_out) and divided by its estimated top singular value, bias untouched.
* `Norm`: normalisation chosen by name, one of `NORMS`:
  "batch" (running statistics in "batch_stats"), "instance", "layer" (over H, W, C of each
  sample, as Gulrajani et al. suggest for critics), "none".
  WGAN-GP critics must not use "batch": the gradient penalty is a per-sample gradient, and batch
  norm makes each sample's output depend on the rest of the batch.
* `ConvBlock`: Conv -> Norm -> activation.
* `upsample`: resize by an integer factor with nearest or bilinear interpolation.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ("batch", "instance", "layer", "none")
# BatchNorm running-average momentum; Flax's default 0.99 lags too far behind short GAN runs.
BATCH_NORM_MOMENTUM = 0.9


class Conv(nn.Module):
  """Convolution (or transposed convolution) with optional spectral normalisation.

  Attributes:
    features: output channels.
    kernel_size: spatial kernel size.
    strides: spatial strides (for `transpose=True`, the upsampling factor).
    use_bias: whether to add a bias.
    spectral_norm: divide the kernel by its top singular value (power iteration).
    transpose: use `nn.ConvTranspose` instead of `nn.Conv`.
    dtype: computation dtype; parameters stay float32.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  use_bias: bool = True
  spectral_norm: bool = False
  transpose: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    layer_cls = nn.ConvTranspose if self.transpose else nn.Conv
    layer = layer_cls(self.features, tuple(self.kernel_size), strides=tuple(self.strides),
                      padding="SAME", use_bias=self.use_bias, dtype=self.dtype, name="conv")
    if not self.spectral_norm:
      return layer(x)
    return nn.SpectralNorm(layer, dtype=self.dtype, name="spectral_norm")(
        x, update_stats=update_stats)


def check_norm(kind: str) -> None:
  """Raises a ValueError naming the valid choices if `kind` is not one of `NORMS`."""
  if kind not in NORMS:
    raise ValueError(f"unknown norm {kind!r}; valid names: {', '.join(NORMS)}")


class Norm(nn.Module):
  """Normalisation picked by name (see `NORMS`); "none" is the identity."""
  kind: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_norm(self.kind)
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM,
                          dtype=self.dtype)(x)
    if self.kind == "instance":
      return nn.InstanceNorm(dtype=self.dtype)(x)
    if self.kind == "layer":
      # Statistics over each sample's H, W, C; scale and bias per channel.
      return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1, dtype=self.dtype)(x)
    return x


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with the 0.2 slope used by DCGAN / pix2pix discriminators."""
  return nn.leaky_relu(x, negative_slope=0.2)


class ConvBlock(nn.Module):
  """Conv -> Norm -> activation; the bias is dropped when a norm follows (it would cancel)."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  norm: str = "batch"
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  spectral_norm: bool = False
  transpose: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = Conv(self.features, self.kernel_size, self.strides, use_bias=self.norm == "none",
             spectral_norm=self.spectral_norm, transpose=self.transpose,
             dtype=self.dtype)(x, update_stats=train)
    x = Norm(self.norm, dtype=self.dtype)(x, train=train)
    return self.activation(x)


def upsample(x: jax.Array, factor: int, method: str = "nearest") -> jax.Array:
  """Resizes (B, H, W, C) to (B, factor * H, factor * W, C); method "nearest" or "bilinear"."""
  if method not in ("nearest", "bilinear"):
    raise ValueError(f"unknown upsampling {method!r}; valid names: nearest, bilinear")
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, factor * h, factor * w, c), method=method).astype(x.dtype)
