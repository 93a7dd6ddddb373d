"""The "Colorful Image Colorization" CNN (Zhang, Isola, Efros, ECCV 2016), as `"zhang_cic"`.

Eight blocks of 3x3 convolutions, each followed by ReLU, with BatchNorm closing blocks 1-7 (as in
the authors' `colorization_deploy_v2` network; block 8 feeds the heads directly). There is no
pooling: the last conv of blocks 1-3 has stride 2 (1/8 resolution), blocks 5-6 use dilation 2
to widen the receptive field without losing resolution, and block 8 opens with a 4x4 stride-2
transposed conv back to 1/4 resolution. Two heads read block 8:

* `"logits"`: a 1x1 conv to `num_bins` classes at 1/4 resolution, trained with
  `colorjax.color.soft_encoding.rebalanced_cross_entropy` against area-downsampled ab targets and
  decoded with `decode.logits_to_ab_norm` (annealed mean) at test time.
* `"ab"`: a 1x1 conv to 2 channels, tanh, bilinearly upsampled to the input size, so the model
  also keeps the generic generator contract (normalised ab in [-1, 1]) for regression losses.

Input sides must be divisible by 8.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models import GENERATORS
from colorjax.models import layers

# (width multiplier, number of convs, stride of the last conv, dilation) of blocks 1-7; with
# width 64 this is the paper's 64, 128, 256, 512, 512, 512, 512 channels.
_BLOCKS = (
    (1, 2, 2, 1),
    (2, 2, 2, 1),
    (4, 3, 2, 1),
    (8, 3, 1, 1),
    (8, 3, 1, 2),
    (8, 3, 1, 2),
    (8, 3, 1, 1),
)
# Block 8: a transposed conv (x2) and two convs at 4x width (256 channels for width 64).
_BLOCK8_MULT = 4
_DOWNSAMPLING = 8  # Blocks 1-3 halve the resolution three times.
_LOGITS_DOWNSAMPLING = 4  # Block 8 upsamples once.


@GENERATORS.register("zhang_cic")
class ZhangCIC(nn.Module):
  """Zhang et al.'s classification colorizer with an extra regression head.

  Attributes:
    num_bins: number of ab classes Q (261 for the default gamut bins at grid 10; must equal the
      number of bins the loss uses).
    width: channels of block 1; later blocks use 2x, 4x and 8x this.
    dtype: computation dtype; parameters stay float32.
    conv: the convolution implementation (`layers.CONV_IMPLS`), chosen where the model is
      built (`layers.resolve_conv`); the parameters do not depend on it.
      The 1x1 heads stay XLA's: they are plain matmuls already.
  """
  num_bins: int = 261
  width: int = 64
  dtype: Any = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, l: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    _, height, width, _ = l.shape
    if height % _DOWNSAMPLING or width % _DOWNSAMPLING:
      raise ValueError(f"zhang_cic needs image sides divisible by {_DOWNSAMPLING}; "
                       f"got {l.shape[1:3]}")
    x = l.astype(self.dtype)
    for block, (mult, num_convs, stride, dilation) in enumerate(_BLOCKS, start=1):
      for i in range(num_convs):
        s = stride if i == num_convs - 1 else 1
        x = layers.Conv2d(mult * self.width, (3, 3), (s, s), "SAME",
                          kernel_dilation=(dilation, dilation), dtype=self.dtype,
                          conv=self.conv, name=f"conv{block}_{i + 1}")(x)
        x = nn.relu(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=layers.BATCH_NORM_MOMENTUM,
                       dtype=self.dtype, name=f"norm{block}")(x)
    features = _BLOCK8_MULT * self.width
    x = layers.ConvTranspose2x(features, dtype=self.dtype, conv=self.conv, name="conv8_1")(x)
    x = nn.relu(x)
    for i in (2, 3):
      x = nn.relu(layers.Conv2d(features, (3, 3), dtype=self.dtype, conv=self.conv,
                                name=f"conv8_{i}")(x))
    logits = nn.Conv(self.num_bins, (1, 1), dtype=self.dtype, name="class_head")(x)
    ab = jnp.tanh(nn.Conv(2, (1, 1), dtype=self.dtype, name="ab_head")(x))
    ab = jax.image.resize(ab, (ab.shape[0], height, width, 2), method="bilinear")
    return {"ab": ab.astype(jnp.float32), "logits": logits.astype(jnp.float32)}


def logits_size(image_size: tuple[int, int]) -> tuple[int, int]:
  """Spatial size of zhang_cic's logits for an input of `image_size` = (H, W)."""
  return image_size[0] // _LOGITS_DOWNSAMPLING, image_size[1] // _LOGITS_DOWNSAMPLING
