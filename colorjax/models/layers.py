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
* `conv`: every convolution layer (and every model) takes the implementation by name,
  `CONV_IMPLS`: "xla" (XLA's convolution) or "im2col" (one matmul; fast gradients on CPU).
  `resolve_conv` picks it once for the platforms a model will run on, where the model is built
  (`colorjax.training.builders`, `colorjax.inference`, `colorjax.export`); the parameters and,
  within float rounding, the outputs are the same either way.
* `upsample`: resize by an integer factor with nearest or bilinear interpolation.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models import cpu_conv

NORMS = ("batch", "instance", "layer", "none")
# "im2col" computes convolutions with `cpu_conv` (gradients as matmuls, padding-only taps
# skipped) rather than leaving im2col's gradient to autodiff: 1.12x the pix2pix train step at
# 32 px, 1.04x at 128 px (benchmarks/conv_variants.py). A switch so that benchmark can compare.
CPU_MATMUL_GRADIENTS = True
# BatchNorm running-average momentum; Flax's default 0.99 lags too far behind short GAN runs.
BATCH_NORM_MOMENTUM = 0.9


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


CONV_IMPLS = ("xla", "im2col")
CONV_CHOICES = ("auto",) + CONV_IMPLS


def resolve_conv(choice: str, platforms: Sequence[str] | None = None) -> str:
  """The convolution implementation (one of `CONV_IMPLS`) for `choice` on `platforms`.

  "xla" and "im2col" name themselves; "auto" is "im2col" when every target platform is the CPU
  and "xla" otherwise. `platforms` default to the local backend; an export for several
  platforms passes them all, since one artifact serves every one of them.
  """
  if choice not in CONV_CHOICES:
    raise ValueError(f"unknown convolution implementation {choice!r}; valid: "
                     f"{', '.join(CONV_CHOICES)}")
  if choice != "auto":
    return choice
  platforms = [jax.default_backend()] if platforms is None else list(platforms)
  return "im2col" if platforms and all(p == "cpu" for p in platforms) else "xla"


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = "SAME",
           dilation: Sequence[int] = (1, 1), *, impl: str) -> jax.Array:
  """NHWC x HWIO convolution, as XLA's convolution ("xla") or im2col + one matmul ("im2col").

  XLA's CPU backend computes convolution gradients (the weight gradient above all) in a slow
  generic loop, about 10x off its matmul rate (benchmarks/README.md, "Train step"). Gathering
  the kh x kw shifted views of the input and multiplying once by the reshaped kernel gives the
  same result with a matmul forward and backward. On GPU/TPU the native convolution is faster.
  The choice is the caller's (`resolve_conv`), made once where the model is built, and never
  read from the backend here: an export lowered on a CPU host for a GPU must not get im2col.
  """
  if impl == "xla":
    pads = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), pads,
                                        rhs_dilation=tuple(dilation),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if impl != "im2col":
    raise ValueError(f"unknown convolution implementation {impl!r}; valid: "
                     f"{', '.join(CONV_IMPLS)}")
  kh, kw, c_in, c_out = kernel.shape
  (sh, sw), (dh, dw) = strides, dilation
  span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1  # The dilated kernel's extent.
  if isinstance(padding, str):
    if padding != "SAME":
      raise ValueError(f"padding {padding!r}: only 'SAME' or explicit pairs")
    padding = (_same_padding(x.shape[1], span_h, sh), _same_padding(x.shape[2], span_w, sw))
  if CPU_MATMUL_GRADIENTS:
    return cpu_conv.conv2d(x, kernel, (sh, sw), tuple(map(tuple, padding)), (dh, dw))
  x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  out_h = (x.shape[1] - span_h) // sh + 1
  out_w = (x.shape[2] - span_w) // sw + 1
  views = [x[:, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw]
           for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
  return patches @ kernel.reshape(kh * kw * c_in, c_out)


class Conv2d(nn.Module):
  """`nn.Conv` (same "kernel"/"bias" parameters) computed with `conv2d`.

  `conv` is the implementation (`CONV_IMPLS`): it changes the computation, never the
  parameters, so a checkpoint trained with one loads and runs with the other.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str | Sequence[tuple[int, int]] = "SAME"
  use_bias: bool = True
  kernel_dilation: Sequence[int] = (1, 1)
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features))
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.strides, self.padding,
               self.kernel_dilation, impl=self.conv)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class ConvTranspose2x(nn.Module):
  """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")`, computed fast on CPU.

  XLA's CPU backend runs the gradient of a transposed (input-dilated) convolution through a slow
  generic path, up to 10x the time of its forward pass (benchmarks/README.md, "Train step").
  The same layer is a sub-pixel convolution: with Flax's SAME padding, output row 2m + a reads
  input rows m - 1 + a and m + a through kernel taps a and 2 + a. So one 2x2 convolution over
  the input padded by one on each side, with the four phases' taps stacked as output channels,
  then each phase's shifted slice interleaved (depth-to-space), gives identical outputs with the
  same parameters ("kernel" (4, 4, C_in, C_out), "bias") and plain stride-1 gradients; `conv`
  picks how that 2x2 convolution is computed (`conv2d`). With "im2col" on CPU the layer is
  instead the exact transpose of a 4x4 stride-2 convolution, per output phase, with matmul
  gradients (`cpu_conv.conv_transpose_2x`): no wasted multiply-adds at 1x1 and 2x2 inputs.
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c_in, c_out = x.shape[-1], self.features
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, c_in, c_out))
    if self.conv == "im2col" and CPU_MATMUL_GRADIENTS:
      # The transpose of a 4x4 stride-2 convolution, per output phase (cpu_conv).
      y = cpu_conv.conv_transpose_2x(x.astype(self.dtype), kernel.astype(self.dtype))
      if self.use_bias:
        y = y + self.param("bias", nn.initializers.zeros, (c_out,)).astype(self.dtype)
      return y
    # kernel[2 dy + a, 2 dx + b] -> phase_kernel[dy, dx, c_in, (a, b, c_out)].
    phase_kernel = kernel.reshape(2, 2, 2, 2, c_in, c_out).transpose(0, 2, 4, 1, 3, 5)
    y = conv2d(x.astype(self.dtype),
               phase_kernel.reshape(2, 2, c_in, 4 * c_out).astype(self.dtype),
               padding=((1, 1), (1, 1)), impl=self.conv)
    batch, height, width = x.shape[:3]
    y = y.reshape(batch, height + 1, width + 1, 2, 2, c_out)
    rows = [jnp.stack([y[:, a:a + height, b:b + width, a, b] for b in (0, 1)], axis=3)
            for a in (0, 1)]  # Each (B, H, W, 2 (b), C_out).
    y = jnp.stack(rows, axis=2).reshape(batch, 2 * height, 2 * width, c_out)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (c_out,)).astype(self.dtype)
    return y


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
    conv: the convolution implementation (`CONV_IMPLS`; see `conv2d`). Transposed convolutions
      other than 4x4 stride 2 are always XLA's.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  use_bias: bool = True
  spectral_norm: bool = False
  transpose: bool = False
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
    if not self.transpose:
      layer = Conv2d(self.features, kernel_size, strides, "SAME", use_bias=self.use_bias,
                     dtype=self.dtype, conv=self.conv, name="conv")
    elif kernel_size == (4, 4) and strides == (2, 2):
      layer = ConvTranspose2x(self.features, self.use_bias, self.dtype, conv=self.conv,
                              name="conv")
    else:
      layer = nn.ConvTranspose(self.features, kernel_size, strides=strides, padding="SAME",
                               use_bias=self.use_bias, dtype=self.dtype, name="conv")
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
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = Conv(self.features, self.kernel_size, self.strides, use_bias=self.norm == "none",
             spectral_norm=self.spectral_norm, transpose=self.transpose,
             dtype=self.dtype, conv=self.conv)(x, update_stats=train)
    x = Norm(self.norm, dtype=self.dtype)(x, train=train)
    return self.activation(x)


def upsample(x: jax.Array, factor: int, method: str = "nearest") -> jax.Array:
  """Resizes (B, H, W, C) to (B, factor * H, factor * W, C); method "nearest" or "bilinear"."""
  if method not in ("nearest", "bilinear"):
    raise ValueError(f"unknown upsampling {method!r}; valid names: nearest, bilinear")
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, factor * h, factor * w, c), method=method).astype(x.dtype)
