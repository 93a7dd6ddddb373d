"""cpu_conv's matmul convolutions against XLA's convolution: outputs, first and second gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import cpu_conv

pytestmark = pytest.mark.slow  # Each case compiles convolutions and 2 orders of gradients (3-6 s).

DN = ("NHWC", "HWIO", "NHWC")

# (input size, kernel, stride, padding, dilation, C_in, C_out): the models' convolutions, the
# U-Net's innermost ones whose taps partly read only padding, and odd sizes.
CASES = [
    (16, 4, 2, ((1, 1), (1, 1)), 1, 3, 5),  # U-Net / PatchGAN down.
    (2, 4, 2, ((1, 1), (1, 1)), 1, 4, 6),  # Innermost U-Net level: 2x2 -> 1x1.
    (4, 4, 2, ((1, 1), (1, 1)), 1, 4, 6),
    (7, 4, 2, ((1, 1), (1, 1)), 1, 3, 4),  # Odd size.
    (9, 3, 1, ((1, 1), (1, 1)), 1, 3, 4),  # 3x3 SAME.
    (8, 1, 1, ((0, 0), (0, 0)), 1, 5, 3),  # 1x1.
    (6, 4, 1, ((1, 1), (1, 1)), 1, 4, 3),  # PatchGAN's last layers.
    (3, 4, 1, ((1, 1), (1, 1)), 1, 4, 1),
    (10, 3, 1, ((2, 2), (2, 2)), 2, 3, 4),  # Dilated (zhang).
    (10, 3, 2, ((1, 1), (1, 1)), 1, 3, 4),  # 3x3 stride 2.
    (8, 3, 2, ((0, 1), (0, 1)), 1, 3, 4),  # SAME padding of a stride-2 3x3.
]


def _rand(key, shape):
  return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def _close(a, b):
  scale = float(jnp.max(jnp.abs(b))) + 1e-6
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * scale, rtol=0)


@pytest.mark.parametrize("size,k,s,pad,d,c_in,c_out", CASES)
def test_conv2d_matches_xla(size, k, s, pad, d, c_in, c_out):
  x, w = _rand(0, (2, size, size + 1, c_in)), _rand(1, (k, k, c_in, c_out))

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, (s, s), pad, rhs_dilation=(d, d),
                                        dimension_numbers=DN)

  def ours(x, w):
    return cpu_conv.conv2d(x, w, (s, s), pad, (d, d))

  y_ref, y = ref(x, w), ours(x, w)
  assert y.shape == y_ref.shape
  _close(y, y_ref)
  g = _rand(2, y.shape)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)) * g)
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
    _close(a, b)

  # Second order, as a gradient penalty takes it: d/dw of |dL/dx|^2.
  def penalty(f):
    return lambda x, w: jnp.sum(jax.grad(loss(f))(x, w) ** 2)
  for a, b in zip(jax.grad(penalty(ours), (0, 1))(x, w), jax.grad(penalty(ref), (0, 1))(x, w)):
    _close(a, b)


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_conv_transpose_2x_matches_flax(size):
  x = _rand(0, (2, size, size + 2, 5))
  layer = nn.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
  params = layer.init(jax.random.key(1), x)
  kernel = params["params"]["kernel"]
  ref = lambda x, w: layer.apply({"params": {"kernel": w}}, x)
  y_ref, y = ref(x, kernel), cpu_conv.conv_transpose_2x(x, kernel)
  assert y.shape == y_ref.shape
  _close(y, y_ref)
  g = _rand(2, y.shape)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)) * g)
  grads = jax.grad(loss(cpu_conv.conv_transpose_2x), (0, 1))(x, kernel)
  for a, b in zip(grads, jax.grad(loss(ref), (0, 1))(x, kernel)):
    _close(a, b)
