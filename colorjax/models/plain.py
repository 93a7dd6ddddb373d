"""A plain (skip-free) convolutional colorizer in the DCGAN style (Radford et al. 2016)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models import GENERATORS
from colorjax.models import layers

# (width multiplier, stride) of the 13 3x3 conv + BN + ReLU layers: two stride-2 convs take the
# image to 1/4 resolution, where nine convs at 4x width carry most of the receptive field.
_LAYOUT = ((1, 1), (1, 2), (2, 1), (2, 2)) + ((4, 1),) * 9
# (width multiplier) of the two stride-2 transposed convs that return to full resolution.
_UP_LAYOUT = (2, 1)


@GENERATORS.register("plain")
class Plain(nn.Module):
  """13 convs + BN + ReLU, two transposed convs, a tanh 2-channel head.

  Attributes:
    width: channels of the first layer (others are 1x, 2x or 4x this).
    dtype: computation dtype; parameters stay float32.
    conv: the convolution implementation (`layers.CONV_IMPLS`), chosen where the model is
      built (`layers.resolve_conv`); the parameters do not depend on it.
  Input sides must be divisible by 4.
  """
  width: int = 64
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, l: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    if l.shape[1] % 4 or l.shape[2] % 4:
      raise ValueError(f"plain needs image sides divisible by 4; got {l.shape[1:3]}")
    x = l.astype(self.dtype)
    for mult, stride in _LAYOUT:
      x = layers.ConvBlock(mult * self.width, strides=(stride, stride), dtype=self.dtype,
                           conv=self.conv)(x, train=train)
    for mult in _UP_LAYOUT:
      x = layers.ConvBlock(mult * self.width, (4, 4), (2, 2), transpose=True, dtype=self.dtype,
                           conv=self.conv)(x, train=train)
    ab = layers.Conv2d(2, (3, 3), dtype=self.dtype, conv=self.conv, name="head")(x)
    return {"ab": jnp.tanh(ab)}
