"""The pix2pix U-Net generator (Isola et al. 2017), predicting ab from L."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models import GENERATORS
from colorjax.models.layers import Conv2d, ConvTranspose2x, Norm, check_norm

_KERNEL = (4, 4)


@GENERATORS.register("unet")
class UNet(nn.Module):
  """U-Net with `num_downs` stride-2 levels (8 for 256 px, 7 for 128 px, 5 for 32 px).

  Encoder: 4x4 stride-2 convs with LeakyReLU(0.2); decoder: 4x4 stride-2 transposed convs with
  ReLU and skip connections. As in pix2pix, dropout (rate `dropout`) in the innermost decoder
  levels is the generator's only noise source, and the outermost levels have no norm.
  """
  num_downs: int = 8
  features: int = 64
  max_features: int = 512
  norm: str = "batch"
  dropout: float = 0.5
  num_dropout_levels: int = 3
  dtype: Any = jnp.float32

  def _width(self, level: int) -> int:
    return min(self.features * 2 ** level, self.max_features)

  @nn.compact
  def __call__(self, l: jnp.ndarray, *, train: bool) -> dict[str, jnp.ndarray]:
    check_norm(self.norm)
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
                 use_bias=self.norm != "batch", dtype=self.dtype, name=f"down{level}")(x)
      innermost = level == self.num_downs - 1
      if 0 < level and not innermost:
        x = Norm(self.norm, dtype=self.dtype)(x, train=train)
      skips.append(x)
    skips.pop()  # The innermost activation feeds the decoder directly.
    for level in reversed(range(self.num_downs - 1)):
      x = nn.relu(x)
      x = ConvTranspose2x(self._width(level), use_bias=self.norm != "batch", dtype=self.dtype,
                          name=f"up{level + 1}")(x)
      x = Norm(self.norm, dtype=self.dtype)(x, train=train)
      if level >= self.num_downs - 1 - self.num_dropout_levels and self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = jnp.concatenate([x, skips[level]], axis=-1)
    x = nn.relu(x)
    x = ConvTranspose2x(2, dtype=self.dtype, name="up0")(x)
    return {"ab": jnp.tanh(x).astype(jnp.float32)}
