"""Global/local fusion colorizer (Iizuka et al. 2016) with SAGAN self-attention (Zhang et al. 2019).

Data flow for an input of side S (divisible by 8), width w (64 reproduces the paper's channels):

  L -> low-level encoder (6 convs, three stride 2)             -> S/8,  8w
     -> mid-level convs                                          -> S/8,  4w   local features
     -> global branch on the low-level features: 4 convs (two stride 2), global average pool,
        dense 16w -> 8w -> 4w                                    -> (4w,)      global vector
        [optional dense num_classes head on the 8w layer         -> "class_logits"]
  fusion: the global vector tiled over S/8 x S/8, concatenated with the local features, 1x1 conv
  -> `num_attention_blocks` self-attention blocks at S/8
  -> decoder: conv 2w, x2 upsample, conv w, conv w, x2, conv w/2, x2, conv w/2, conv 2 -> tanh ab.

Iizuka et al. flatten a fixed 224 px global branch; global average pooling here lets the same
weights run at 32-256 px. Dropout (rate `dropout`) after the fusion and in the decoder is the
generator's noise source, drawn from the "dropout" RNG stream.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models import GENERATORS
from colorjax.models import layers

# (width multiplier, stride) of each stage's 3x3 conv blocks.
_LOW_LEVEL = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1))
_MID_LEVEL = ((8, 1), (4, 1))
_GLOBAL_CONVS = ((8, 2), (8, 1), (8, 2), (8, 1))
_GLOBAL_DENSE = (16, 8, 4)
_DOWNSAMPLING = 8


class SelfAttention(nn.Module):
  """SAGAN self-attention: x + gamma * softmax(q k^T) v over all spatial positions.

  Queries and keys are 1x1 convs to C / `reduction` channels, values keep C channels; gamma is
  initialised to 0 so the block starts as the identity and the network learns how much
  non-local evidence to mix in.
  """
  reduction: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    inner = max(c // self.reduction, 1)
    q = nn.Conv(inner, (1, 1), dtype=self.dtype, name="query")(x).reshape(b, h * w, inner)
    k = nn.Conv(inner, (1, 1), dtype=self.dtype, name="key")(x).reshape(b, h * w, inner)
    v = nn.Conv(c, (1, 1), dtype=self.dtype, name="value")(x).reshape(b, h * w, c)
    # Softmax in float32: bfloat16 logits over thousands of positions lose the peak.
    attn = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k).astype(jnp.float32), axis=-1)
    out = jnp.einsum("bqk,bkc->bqc", attn.astype(self.dtype), v).reshape(b, h, w, c)
    gamma = self.param("gamma", nn.initializers.zeros, ())
    return x + gamma.astype(self.dtype) * out


@GENERATORS.register("fusion_attention")
class FusionAttention(nn.Module):
  """Iizuka-style global/local fusion generator with self-attention.

  Attributes:
    width: base channel count; 64 gives Iizuka's 64..512 channels and a 256-d global vector.
    num_classes: if > 0, an auxiliary image classification head returns "class_logits".
    num_attention_blocks: self-attention blocks after the fusion layer.
    dropout: dropout rate used as noise (0 disables it).
    upsample: "nearest" or "bilinear" upsampling in the decoder.
    norm: normalisation of the conv blocks (see `layers.NORMS`).
    dtype: computation dtype; parameters stay float32.
    conv: the convolution implementation (`layers.CONV_IMPLS`), chosen where the model is
      built (`layers.resolve_conv`); the parameters do not depend on it.
      The 1x1 convolutions (attention, fusion) stay XLA's: they are plain matmuls already.
  """
  width: int = 64
  num_classes: int = 0
  num_attention_blocks: int = 1
  dropout: float = 0.0
  upsample: str = "nearest"
  norm: str = "batch"
  dtype: Any = jnp.float32
  conv: str = "xla"

  def _convs(self, x: jax.Array, stage: tuple[tuple[int, int], ...], train: bool) -> jax.Array:
    for mult, stride in stage:
      x = layers.ConvBlock(mult * self.width, strides=(stride, stride), norm=self.norm,
                           dtype=self.dtype, conv=self.conv)(x, train=train)
    return x

  def _global(self, low: jax.Array, train: bool) -> tuple[jax.Array, jax.Array | None]:
    """Global vector (B, 4w) and optional class logits from the low-level features."""
    x = self._convs(low, _GLOBAL_CONVS, train)
    x = jnp.mean(x, axis=(1, 2))
    logits = None
    for mult in _GLOBAL_DENSE:
      x = nn.relu(nn.Dense(mult * self.width, dtype=self.dtype)(x))
      if mult == 8 and self.num_classes:
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
    return x, logits

  def _fuse(self, local: jax.Array, global_vec: jax.Array, train: bool) -> jax.Array:
    tiled = jnp.broadcast_to(global_vec[:, None, None, :],
                             local.shape[:3] + (global_vec.shape[-1],))
    x = jnp.concatenate([local, tiled], axis=-1)
    x = nn.relu(nn.Conv(4 * self.width, (1, 1), dtype=self.dtype, name="fusion")(x))
    return nn.Dropout(self.dropout, deterministic=not train)(x)

  def _block(self, x: jax.Array, features: int, train: bool) -> jax.Array:
    return layers.ConvBlock(max(features, 1), norm=self.norm, dtype=self.dtype,
                            conv=self.conv)(x, train=train)

  def _decode(self, x: jax.Array, train: bool) -> jax.Array:
    x = self._block(x, 2 * self.width, train)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = layers.upsample(x, 2, self.upsample)
    x = self._block(self._block(x, self.width, train), self.width, train)
    x = layers.upsample(x, 2, self.upsample)
    x = self._block(x, self.width // 2, train)
    x = layers.upsample(x, 2, self.upsample)
    x = self._block(x, self.width // 2, train)
    return jnp.tanh(layers.Conv2d(2, (3, 3), dtype=self.dtype, conv=self.conv, name="head")(x))

  @nn.compact
  def __call__(self, l: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    if l.shape[1] % _DOWNSAMPLING or l.shape[2] % _DOWNSAMPLING:
      raise ValueError(f"fusion_attention needs image sides divisible by {_DOWNSAMPLING}; "
                       f"got {l.shape[1:3]}")
    low = self._convs(l.astype(self.dtype), _LOW_LEVEL, train)
    local = self._convs(low, _MID_LEVEL, train)
    global_vec, class_logits = self._global(low, train)
    x = self._fuse(local, global_vec, train)
    for _ in range(self.num_attention_blocks):
      x = SelfAttention(dtype=self.dtype)(x)
    out = {"ab": self._decode(x, train)}
    if class_logits is not None:
      out["class_logits"] = class_logits
    return out
