"""The pix2pix U-Net generator (Isola et al. 2017), predicting ab from L."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models import GENERATORS
from colorjax.models.layers import Conv2d, ConvTranspose2x, Norm, check_norm, upsample

_KERNEL = (4, 4)
UPSAMPLING = ("transposed", "resize_conv")


def up2x(features: int, kind: str, name: str, use_bias: bool, dtype: Any, conv: str,
         x: jnp.ndarray) -> jnp.ndarray:
  """The decoder's 2x upsampling: pix2pix's 4x4 stride-2 transposed convolution, or a
  resize-convolution (nearest-neighbour 2x, then a 3x3 convolution; Odena et al. 2016,
  "Deconvolution and checkerboard artifacts"), in which every output pixel sees the same kernel
  taps and so cannot form a period-2 pattern, at 9/4 the multiply-adds per output pixel.
  Called inside a compact `__call__`; the layer is named `name` either way, and `conv` is the
  convolution implementation (`layers.CONV_IMPLS`)."""
  if kind == "transposed":
    return ConvTranspose2x(features, use_bias=use_bias, dtype=dtype, conv=conv, name=name)(x)
  return Conv2d(features, (3, 3), use_bias=use_bias, dtype=dtype, conv=conv, name=name)(
      upsample(x, 2, "nearest"))


@GENERATORS.register("unet")
class UNet(nn.Module):
  """U-Net with `num_downs` stride-2 levels (8 for 256 px, 7 for 128 px, 5 for 32 px).

  Encoder: 4x4 stride-2 convs with LeakyReLU(0.2); decoder: 4x4 stride-2 transposed convs with
  ReLU and skip connections. As in pix2pix, dropout (rate `dropout`) in the innermost decoder
  levels is the generator's only noise source, and the outermost levels have no norm.
  `upsampling` picks the decoder's 2x upsampling (`UPSAMPLING`, see `up2x`). `conv` is the
  convolution implementation (`layers.CONV_IMPLS`), chosen where the model is built; the
  parameters do not depend on it.
  """
  num_downs: int = 8
  features: int = 64
  max_features: int = 512
  norm: str = "batch"
  dropout: float = 0.5
  num_dropout_levels: int = 3
  upsampling: str = "transposed"
  dtype: Any = jnp.float32
  conv: str = "xla"

  def _width(self, level: int) -> int:
    return min(self.features * 2 ** level, self.max_features)

  @nn.compact
  def __call__(self, l: jnp.ndarray, *, train: bool) -> dict[str, jnp.ndarray]:
    check_norm(self.norm)
    if self.upsampling not in UPSAMPLING:
      raise ValueError(f"unknown upsampling {self.upsampling!r}; valid: {', '.join(UPSAMPLING)}")
    size = min(l.shape[1], l.shape[2])
    if size % 2 ** self.num_downs:
      raise ValueError(f"unet with num_downs={self.num_downs} needs image sides divisible by "
                       f"{2 ** self.num_downs}; got {l.shape[1:3]}")
    x = l.astype(self.dtype)
    skips = []
    for level in range(self.num_downs):
      if level > 0:
        x = nn.leaky_relu(x, 0.2)
      x = Conv2d(self._width(level), _KERNEL, (2, 2), ((1, 1), (1, 1)),
                 use_bias=self.norm != "batch", dtype=self.dtype, conv=self.conv,
                 name=f"down{level}")(x)
      innermost = level == self.num_downs - 1
      if 0 < level and not innermost:
        x = Norm(self.norm, dtype=self.dtype)(x, train=train)
      skips.append(x)
    skips.pop()  # The innermost activation feeds the decoder directly.
    for level in reversed(range(self.num_downs - 1)):
      x = nn.relu(x)
      x = up2x(self._width(level), self.upsampling, f"up{level + 1}", self.norm != "batch",
               self.dtype, self.conv, x)
      x = Norm(self.norm, dtype=self.dtype)(x, train=train)
      if level >= self.num_downs - 1 - self.num_dropout_levels and self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = jnp.concatenate([x, skips[level]], axis=-1)
    x = nn.relu(x)
    x = up2x(2, self.upsampling, "up0", True, self.dtype, self.conv, x)
    return {"ab": jnp.tanh(x).astype(jnp.float32)}


def num_downs_for(image_size: int) -> int:
  """pix2pix's U-Net depth for a size: one level per halving down to 1x1 (unet_256 has 8)."""
  num_downs = int(round(math.log2(image_size)))
  if 2 ** num_downs != image_size:
    raise ValueError(f"the U-Net needs a power-of-two image size, got {image_size}")
  return num_downs
