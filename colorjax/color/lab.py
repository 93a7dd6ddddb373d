"""sRGB (D65) <-> CIE Lab in jnp, used inside the jitted step.

The formulas follow scikit-image's `rgb2lab` / `lab2rgb` (sRGB companding, D65 white point,
2-degree observer), so results agree with it to float32 precision.

What the models see (`normalize_l`, `normalize_ab`):
  * L in [0, 100]   -> L / 50 - 1        in [-1, 1]
  * a, b in ~[-110, 110] -> ab / 110      in ~[-1, 1]   (the sRGB gamut spans a in [-86, 98],
    b in [-108, 95], so the generators' tanh range covers it).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

L_SCALE = 50.0
AB_SCALE = 110.0

# sRGB primaries to CIE XYZ (D65), as in scikit-image.
_RGB_TO_XYZ_F64 = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
# numpy constants: importing this module must not start a JAX backend.
_RGB_TO_XYZ = _RGB_TO_XYZ_F64.astype(np.float32)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ_F64).astype(np.float32)
# D65 reference white, 2-degree observer (scikit-image's default).
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_EPSILON = 0.008856
_KAPPA = 7.787


def rgb_to_lab(rgb: jnp.ndarray) -> jnp.ndarray:
  """sRGB in [0, 1], shape (..., 3) -> Lab (L in [0, 100]), float32."""
  rgb = rgb.astype(jnp.float32)
  linear = jnp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
  xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
  f = jnp.where(xyz > _EPSILON, jnp.cbrt(xyz), _KAPPA * xyz + 16.0 / 116.0)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  y = xyz[..., 1]
  lightness = jnp.where(y > _EPSILON, 116.0 * fy - 16.0, 903.3 * y)
  return jnp.stack([lightness, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: jnp.ndarray) -> jnp.ndarray:
  """Lab, shape (..., 3) -> sRGB clipped to [0, 1], float32."""
  lab = lab.astype(jnp.float32)
  lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
  fy = (lightness + 16.0) / 116.0
  fx = a / 500.0 + fy
  fz = jnp.maximum(fy - b / 200.0, 0.0)  # scikit-image clips negative z the same way.
  f = jnp.stack([fx, fy, fz], axis=-1)
  xyz = jnp.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / _KAPPA) * _WHITE_D65
  linear = xyz @ _XYZ_TO_RGB.T
  linear = jnp.maximum(linear, 0.0)  # Negative light is out of gamut; avoid NaN in the power.
  rgb = jnp.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
  return jnp.clip(rgb, 0.0, 1.0)


def normalize_l(lightness: jnp.ndarray) -> jnp.ndarray:
  return lightness / L_SCALE - 1.0


def normalize_ab(ab: jnp.ndarray) -> jnp.ndarray:
  return ab / AB_SCALE


def denormalize_l(l_norm: jnp.ndarray) -> jnp.ndarray:
  return (l_norm + 1.0) * L_SCALE


def denormalize_ab(ab_norm: jnp.ndarray) -> jnp.ndarray:
  return ab_norm * AB_SCALE


def uint8_to_model_inputs(rgb_uint8: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """uint8 RGB batch (B, H, W, 3) -> normalised (L (B, H, W, 1), ab (B, H, W, 2))."""
  lab = rgb_to_lab(rgb_uint8.astype(jnp.float32) / 255.0)
  return normalize_l(lab[..., :1]), normalize_ab(lab[..., 1:])


def model_outputs_to_rgb(l_norm: jnp.ndarray, ab_norm: jnp.ndarray) -> jnp.ndarray:
  """Normalised L (..., 1) and ab (..., 2) -> sRGB in [0, 1]."""
  lab = jnp.concatenate([denormalize_l(l_norm), denormalize_ab(ab_norm)], axis=-1)
  return lab_to_rgb(lab)


def gray_rgb(rgb_uint8: jnp.ndarray) -> jnp.ndarray:
  """The gray baseline of uint8 RGB images: their L with ab = 0, as sRGB in [0, 1]."""
  l_norm, ab_norm = uint8_to_model_inputs(rgb_uint8)
  return model_outputs_to_rgb(l_norm, jnp.zeros_like(ab_norm))
