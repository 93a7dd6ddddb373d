"""Image-level discriminators conditioned on L (the input is the concatenated (L, ab) image).

* "global": DCGAN discriminator (Radford et al. 2016) returning one logit per image (B, 1).
  Use it with norm "none" / "layer" / "instance" (not "batch") under wgan_gp, and with
  `spectral_norm=True` (usually norm "none") for SN-GAN / hinge training.
* "ebgan_ae": EBGAN autoencoder discriminator (Zhao et al. 2017) returning the per-sample
  reconstruction energy (B,), the mean squared error over the normalised (L, ab) values.

Both call layers with `update_stats=train`, so BatchNorm statistics and spectral-norm power
iterations advance only in training-mode calls (with `mutable=["batch_stats"]`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models import DISCRIMINATORS
from colorjax.models import layers


def _pair(l: jax.Array, ab: jax.Array, dtype: Any) -> jax.Array:
  """The conditional input: L and ab concatenated on channels, (B, H, W, 3)."""
  return jnp.concatenate([l, ab], axis=-1).astype(dtype)


@DISCRIMINATORS.register("global")
class GlobalDiscriminator(nn.Module):
  """Strided 4x4 convs + LeakyReLU (+ norm) -> global average -> dense -> (B, 1) logit.

  Attributes:
    width: channels of the first conv, doubled at each later one (capped at 8 * width).
    num_downsamples: number of stride-2 convs; the input sides must be divisible by 2**it.
    norm: normalisation after every conv but the first (see `layers.NORMS`).
    spectral_norm: spectrally normalise every conv and the final dense layer.
    dtype: computation dtype; parameters stay float32.
    conv: the convolution implementation (`layers.CONV_IMPLS`), chosen where the model is
      built (`layers.resolve_conv`); the parameters do not depend on it.
  """
  width: int = 64
  num_downsamples: int = 4
  norm: str = "batch"
  spectral_norm: bool = False
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, l: jax.Array, ab: jax.Array, *, train: bool) -> jax.Array:
    x = _pair(l, ab, self.dtype)
    for i in range(self.num_downsamples):
      # DCGAN leaves the first layer unnormalised so D sees the input's own statistics.
      x = layers.ConvBlock(self.width * 2 ** min(i, 3), (4, 4), (2, 2),
                           norm="none" if i == 0 else self.norm, activation=layers.leaky_relu,
                           spectral_norm=self.spectral_norm, dtype=self.dtype,
                           conv=self.conv)(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    dense = nn.Dense(1, dtype=self.dtype, name="logit")
    if self.spectral_norm:
      return nn.SpectralNorm(dense, dtype=self.dtype)(x, update_stats=train)
    return dense(x)


@DISCRIMINATORS.register("ebgan_ae")
class EBGANAutoencoder(nn.Module):
  """Conv encoder / transposed-conv decoder over (L, ab); returns the energy (B,).

  The energy is mean((Dec(Enc(x)) - x)^2) over H, W and the 3 channels, in float32, with x the
  normalised (L, ab) image in [-1, 1]; the objectives' EBGAN margin is in these units.

  Attributes:
    width: channels of the first encoder conv, doubled per level.
    num_levels: stride-2 levels; the input sides must be divisible by 2**it.
    norm: normalisation after every conv except the first and the output one.
    dtype: computation dtype; parameters stay float32.
    conv: the convolution implementation (`layers.CONV_IMPLS`), chosen where the model is
      built (`layers.resolve_conv`); the parameters do not depend on it.
  """
  width: int = 64
  num_levels: int = 3
  norm: str = "batch"
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, l: jax.Array, ab: jax.Array, *, train: bool) -> jax.Array:
    x = inputs = _pair(l, ab, self.dtype)
    for i in range(self.num_levels):
      x = layers.ConvBlock(self.width * 2 ** i, (4, 4), (2, 2), norm="none" if i == 0 else self.norm,
                           activation=layers.leaky_relu, dtype=self.dtype,
                           conv=self.conv)(x, train=train)
    for i in reversed(range(self.num_levels - 1)):
      x = layers.ConvBlock(self.width * 2 ** i, (4, 4), (2, 2), norm=self.norm, transpose=True,
                           dtype=self.dtype, conv=self.conv)(x, train=train)
    # Linear output: the target spans [-1, 1], and a tanh would saturate on saturated ab.
    recon = layers.ConvTranspose2x(inputs.shape[-1], dtype=self.dtype, conv=self.conv,
                                   name="reconstruction")(x)
    error = jnp.square(recon.astype(jnp.float32) - inputs.astype(jnp.float32))
    return jnp.mean(error, axis=(1, 2, 3))
