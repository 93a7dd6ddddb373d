"""The 70x70 PatchGAN discriminator (pix2pix) scoring (L, ab) pairs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models import DISCRIMINATORS
from colorjax.models.unet import _norm


@DISCRIMINATORS.register("patchgan")
class PatchGAN(nn.Module):
  """`num_layers`=3 gives the 70x70 receptive field; output (B, h, w, 1) patch logits."""
  features: int = 64
  num_layers: int = 3
  norm: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, l: jnp.ndarray, ab: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    x = jnp.concatenate([l, ab], axis=-1).astype(self.dtype)
    pad = ((1, 1), (1, 1))
    for i in range(self.num_layers + 1):
      stride = 2 if i < self.num_layers else 1
      features = self.features * min(2 ** i, 8)
      x = nn.Conv(features, (4, 4), strides=stride, padding=pad,
                  use_bias=i == 0 or self.norm != "batch", dtype=self.dtype)(x)
      if i > 0 and (norm := _norm(self.norm, train, self.dtype)):
        x = norm(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(1, (4, 4), strides=1, padding=pad, dtype=self.dtype)(x)
    return x.astype(jnp.float32)
