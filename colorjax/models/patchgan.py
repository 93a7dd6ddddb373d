"""The 70x70 PatchGAN discriminator (pix2pix) scoring (L, ab) pairs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models import DISCRIMINATORS
from colorjax.models.layers import Conv2d, Norm, check_norm, leaky_relu


@DISCRIMINATORS.register("patchgan")
class PatchGAN(nn.Module):
  """`num_layers`=3 gives the 70x70 receptive field; output (B, h, w, 1) patch logits.

  4x4 convs with padding 1 as in pix2pix (the receptive field depends on it); `spectral_norm`
  wraps every conv in `nn.SpectralNorm` (power iteration state in "batch_stats"). `conv` is the
  convolution implementation (`layers.CONV_IMPLS`), chosen where the model is built; the
  parameters do not depend on it.
  """
  features: int = 64
  num_layers: int = 3
  norm: str = "batch"
  spectral_norm: bool = False
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, l: jnp.ndarray, ab: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    check_norm(self.norm)
    x = jnp.concatenate([l, ab], axis=-1).astype(self.dtype)
    for i in range(self.num_layers + 1):
      stride = 2 if i < self.num_layers else 1
      features = self.features * min(2 ** i, 8)
      x = self._conv(features, stride, use_bias=i == 0 or self.norm != "batch")(x, train)
      if i > 0:
        x = Norm(self.norm, dtype=self.dtype)(x, train=train)
      x = leaky_relu(x)
    x = self._conv(1, 1, use_bias=True)(x, train)
    return x.astype(jnp.float32)

  def _conv(self, features: int, stride: int, use_bias: bool):
    conv = Conv2d(features, (4, 4), (stride, stride), ((1, 1), (1, 1)), use_bias=use_bias,
                  dtype=self.dtype, conv=self.conv)
    if self.spectral_norm:
      wrapped = nn.SpectralNorm(conv, dtype=self.dtype)
      return lambda x, train: wrapped(x, update_stats=train)
    return lambda x, train: conv(x)
