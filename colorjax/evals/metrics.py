"""Per-image colorization metrics in jnp, usable inside `jax.jit`.

Every metric takes a batch and returns one value per image, shape (B,), so the eval loop can
sum over batches and devices and divide by the image count of the split.

Conventions:
  * RGB images are float in [0, 1], shape (B, H, W, 3).
  * ab tensors are in CIE Lab units (a, b roughly in [-110, 110]), shape (B, H, W, 2).
  * `image_metrics` is the entry point of the eval loop: it takes the normalised model tensors
    (see `colorjax.color.lab`), rebuilds RGB for both the prediction and the truth from the same L
    channel, and also scores the gray baseline (ab = 0) under keys prefixed `gray_`.
"""

from __future__ import annotations

from typing import Callable, Union

import dm_pix
import jax.numpy as jnp
import numpy as np

from colorjax.color import lab

# Weights for the rebalanced AuC: an array broadcastable to (B, H, W), or a function of the true
# ab (Lab units, (B, H, W, 2)) returning such an array (e.g. the inverse class-prior lookup).
PixelWeights = Union[jnp.ndarray, np.ndarray, Callable[[jnp.ndarray], jnp.ndarray]]

# PSNR of identical images is infinite. The gray baseline reproduces a grayscale photo exactly
# (both sides are rebuilt from the same L with ab = 0), and one infinite value would make the split
# average infinite, so the MSE is floored at 1e-10, i.e. PSNR is capped at 100 dB: an RMS error of
# 1e-5, far below one 8-bit level (1/255, 48 dB), so the cap only acts on float32-rounding matches.
_PSNR_MIN_MSE = 1e-10

# SSIM's Gaussian window (Wang et al. 2004): 11 taps of sigma 1.5, dm_pix's default and the window
# skimage's gaussian_weights=True truncates to (radius int(3.5 * 1.5 + 0.5) = 5).
_SSIM_WINDOW = 11

# Zhang et al. (2016) sweep the ab L2 threshold over 0..150 in steps of 1.
AUC_THRESHOLDS = np.arange(0.0, 151.0, 1.0)


def psnr(pred_rgb: jnp.ndarray, true_rgb: jnp.ndarray) -> jnp.ndarray:
  """Peak signal-to-noise ratio in dB with data range 1, per image: (B, H, W, C) -> (B,).

  Equals `skimage.metrics.peak_signal_noise_ratio(true, pred, data_range=1)` (and `dm_pix.psnr`)
  except that identical images give 100 dB instead of +inf (see `_PSNR_MIN_MSE`): why this is
  not `dm_pix.psnr`.
  """
  diff = pred_rgb.astype(jnp.float32) - true_rgb.astype(jnp.float32)
  mse = jnp.mean(jnp.square(diff), axis=(1, 2, 3))
  return -10.0 * jnp.log10(jnp.maximum(mse, _PSNR_MIN_MSE))


def ssim(pred_rgb: jnp.ndarray, true_rgb: jnp.ndarray) -> jnp.ndarray:
  """Mean structural similarity per image: (B, H, W, C) in [0, 1] -> (B,).

  `dm_pix.ssim` (Wang et al. 2004: 11-tap Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03,
  population covariances, 'valid' filtering, averaged over pixels and channels). It equals
  `skimage.metrics.structural_similarity(true, pred, channel_axis=-1, data_range=1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` to ~1e-5: skimage pads with
  'reflect' and then crops (win_size - 1) / 2 = 5 pixels per side, exactly the pixels whose
  window reaches into the padding (tests/evals/test_metrics.py). Images must be at least 11 x 11.
  """
  if min(pred_rgb.shape[1], pred_rgb.shape[2]) < _SSIM_WINDOW:
    raise ValueError(f"ssim needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels, "
                     f"got {pred_rgb.shape[1]}x{pred_rgb.shape[2]}")
  return dm_pix.ssim(pred_rgb.astype(jnp.float32), true_rgb.astype(jnp.float32))


def colorfulness(rgb: jnp.ndarray) -> jnp.ndarray:
  """Hasler & Suesstrunk (2003) colorfulness per image: (B, H, W, 3) in [0, 1] -> (B,).

  The variant is the paper's M^(3) computed directly on gamma-encoded sRGB scaled to 0..255
  (the form used by most colorization papers): rg = R - G, yb = (R + G) / 2 - B,
  M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2), with population
  standard deviations over all pixels of the image. A gray image scores 0.
  """
  rgb255 = rgb.astype(jnp.float32) * 255.0
  r, g, b = rgb255[..., 0], rgb255[..., 1], rgb255[..., 2]
  rg = r - g
  yb = 0.5 * (r + g) - b
  axes = (1, 2)
  sigma = jnp.sqrt(jnp.var(rg, axis=axes) + jnp.var(yb, axis=axes))
  mu = jnp.sqrt(jnp.mean(rg, axis=axes) ** 2 + jnp.mean(yb, axis=axes) ** 2)
  return sigma + 0.3 * mu


def delta_colorfulness(pred_rgb: jnp.ndarray, true_rgb: jnp.ndarray,
                       signed: bool = False) -> jnp.ndarray:
  """Colorfulness difference per image, (B,).

  The default is |CF(pred) - CF(true)|: an error that cannot cancel between an oversaturated and
  an undersaturated image when averaged over a split. `signed=True` gives CF(pred) - CF(true),
  whose split mean shows the direction of the bias (regression-trained colorizers are typically
  desaturated, i.e. negative); `image_metrics` reports both.
  """
  diff = colorfulness(pred_rgb) - colorfulness(true_rgb)
  return diff if signed else jnp.abs(diff)


def _ab_distance(pred_ab: jnp.ndarray, true_ab: jnp.ndarray) -> jnp.ndarray:
  """Per-pixel Euclidean ab distance, (B, H, W, 2) -> (B, H, W), float32."""
  diff = pred_ab.astype(jnp.float32) - true_ab.astype(jnp.float32)
  return jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))


def ab_error(pred_ab: jnp.ndarray, true_ab: jnp.ndarray) -> jnp.ndarray:
  """Mean per-pixel Euclidean distance in the ab plane (Lab units): (B, H, W, 2) -> (B,)."""
  return jnp.mean(_ab_distance(pred_ab, true_ab), axis=(1, 2))


def _resolve_weights(pixel_weights: PixelWeights | None, true_ab: jnp.ndarray) -> jnp.ndarray:
  """Per-pixel weights of shape (B, H, W) (ones when `pixel_weights` is None)."""
  target_shape = true_ab.shape[:-1]
  if pixel_weights is None:
    return jnp.ones(target_shape, jnp.float32)
  weights = pixel_weights(true_ab) if callable(pixel_weights) else pixel_weights
  weights = jnp.asarray(weights, jnp.float32)
  # Accept a trailing singleton channel axis, as weight maps often come as (B, H, W, 1).
  if weights.ndim == len(target_shape) + 1 and weights.shape[-1] == 1:
    weights = weights[..., 0]
  return jnp.broadcast_to(weights, target_shape)


def auc_ab(pred_ab: jnp.ndarray, true_ab: jnp.ndarray,
           thresholds: np.ndarray | jnp.ndarray = AUC_THRESHOLDS,
           pixel_weights: PixelWeights | None = None) -> jnp.ndarray:
  """Zhang et al. (2016) AuC of the ab accuracy curve, per image: (B, H, W, 2) -> (B,) in [0, 1].

  For each threshold t (ascending, default 0, 1, ..., 150 Lab units) the accuracy is the
  (weighted) fraction of pixels with ||pred_ab - true_ab||_2 <= t. The AuC is the trapezoidal
  area under accuracy(t) divided by (t_max - t_min), so a perfect prediction scores 1.

  pixel_weights: None (plain AuC), an array broadcastable to (B, H, W) (or (B, H, W, 1)), or a
    callable mapping the true ab (Lab units, (B, H, W, 2)) to such an array. Zhang's rebalanced
    AuC uses the inverse prior probability of each pixel's true color class. Weights are
    normalised within each image, so the split mean of this value is a mean of per-image
    rebalanced scores (not one pooled rebalancing over all pixels of the split).

  The curve is never materialised per threshold (that would be B*H*W*151 values): a pixel with
  distance d first counts at index k = searchsorted(thresholds, d), so its contribution to the
  trapezoid sum is (t_K - t_k) plus half of the interval (t_{k-1}, t_k]. That is exactly the
  trapezoid of the per-threshold curve, at O(log K) per pixel.
  """
  thresholds = jnp.asarray(thresholds, jnp.float32)
  if thresholds.ndim != 1 or thresholds.shape[0] < 2:
    raise ValueError(f"auc_ab needs at least two thresholds, got shape {thresholds.shape}")
  dist = _ab_distance(pred_ab, true_ab)
  weights = _resolve_weights(pixel_weights, true_ab)
  num = thresholds.shape[0]
  # First threshold index with t >= d ("within" is inclusive); num when d exceeds every t.
  first = jnp.searchsorted(thresholds, dist, side="left")
  t_first = thresholds[jnp.minimum(first, num - 1)]
  t_prev = thresholds[jnp.clip(first - 1, 0, num - 1)]
  full = thresholds[-1] - t_first
  half = jnp.where(first > 0, 0.5 * (t_first - t_prev), 0.0)
  area = jnp.where(first < num, full + half, 0.0) / (thresholds[-1] - thresholds[0])
  return jnp.sum(weights * area, axis=(1, 2)) / jnp.sum(weights, axis=(1, 2))


def _second_differences(x: jnp.ndarray) -> jnp.ndarray:
  """Period-2 detectors on the interior of (B, H, W, C): the horizontal and vertical second
  differences and the 2x2 checker difference, stacked on a new last axis, (B, H-2, W-2, C, 3).

  Each is zero on any locally linear ramp, so smooth colour gradients do not count, and each
  responds with 4x the amplitude of a pattern alternating every pixel along its direction(s),
  the footprint of a stride-2 transposed convolution (Odena et al. 2016, "Deconvolution and
  checkerboard artifacts").
  """
  c = x[:, 1:-1, 1:-1]
  dxx = x[:, 1:-1, :-2] - 2 * c + x[:, 1:-1, 2:]
  dyy = x[:, :-2, 1:-1] - 2 * c + x[:, 2:, 1:-1]
  dxy = c - x[:, 1:-1, 2:] - x[:, 2:, 1:-1] + x[:, 2:, 2:]
  return jnp.stack([dxx, dyy, dxy], axis=-1)


def flat_mask(l: jnp.ndarray, max_step: float = 4.0, visible: tuple[float, float] = (15.0, 90.0)
              ) -> jnp.ndarray:
  """(B, H-2, W-2) interior pixels whose 3x3 neighbourhood in L (Lab units, (B, H, W, 1)) varies
  by at most `max_step`: sky, walls, studio backgrounds, where true colour barely changes.

  Only lightness within `visible` counts: near black and near white any ab renders as (almost)
  the same colour, so what a model predicts there is neither seen nor trained.
  """
  l = l[..., 0].astype(jnp.float32)
  h, w = l.shape[1], l.shape[2]
  windows = jnp.stack([l[:, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3)])
  centre = l[:, 1:-1, 1:-1]
  return (((jnp.max(windows, axis=0) - jnp.min(windows, axis=0)) <= max_step)
          & (centre >= visible[0]) & (centre <= visible[1]))


def checkerboard(ab: jnp.ndarray, l: jnp.ndarray, max_step: float = 4.0) -> jnp.ndarray:
  """RMS period-2 ab energy (Lab units) over the flat regions of L, per image: (B,).

  ab: (B, H, W, 2) in Lab units; l: (B, H, W, 1) in [0, 100], both at the model's resolution
  (upsampling spreads the pattern beyond period 2). Where L is flat the true ab is smooth too
  (the scikit-image photos at 64 px: 2-3 Lab units), so energy there is an artifact; an
  untrained pix2pix U-Net scores 25-60, trained ones 4-10 (docs/quality.md). Images with no flat
  pixel score 0.
  """
  energy = jnp.sum(jnp.square(_second_differences(ab.astype(jnp.float32))), axis=(-2, -1))
  mask = flat_mask(l, max_step).astype(jnp.float32)
  return jnp.sqrt(jnp.sum(energy * mask, axis=(1, 2)) / jnp.maximum(jnp.sum(mask, axis=(1, 2)),
                                                                      1.0))


def _score(prefix: str, l_norm: jnp.ndarray, ab_norm: jnp.ndarray, true_rgb: jnp.ndarray,
           true_ab: jnp.ndarray, true_cf: jnp.ndarray,
           weights: jnp.ndarray | None) -> dict[str, jnp.ndarray]:
  """All prediction-dependent metrics for one colorization (model output or gray baseline)."""
  pred_ab = lab.denormalize_ab(ab_norm)
  pred_rgb = lab.model_outputs_to_rgb(l_norm, ab_norm)
  pred_cf = colorfulness(pred_rgb)
  out = {
      "psnr": psnr(pred_rgb, true_rgb),
      "ssim": ssim(pred_rgb, true_rgb),
      "colorfulness": pred_cf,
      "delta_colorfulness": jnp.abs(pred_cf - true_cf),
      "colorfulness_bias": pred_cf - true_cf,
      "ab_error": ab_error(pred_ab, true_ab),
      "auc": auc_ab(pred_ab, true_ab),
      "checkerboard": checkerboard(pred_ab, lab.denormalize_l(l_norm)),
  }
  if weights is not None:
    out["auc_rebalanced"] = auc_ab(pred_ab, true_ab, pixel_weights=weights)
  return {prefix + k: v for k, v in out.items()}


def image_metrics(l_norm: jnp.ndarray, pred_ab_norm: jnp.ndarray, true_ab_norm: jnp.ndarray,
                  pixel_weights: PixelWeights | None = None) -> dict[str, jnp.ndarray]:
  """Every metric for a batch of model outputs and for the gray baseline, each of shape (B,).

  Args:
    l_norm: normalised L, (B, H, W, 1) (see `lab.normalize_l`).
    pred_ab_norm: normalised predicted ab, (B, H, W, 2).
    true_ab_norm: normalised true ab, (B, H, W, 2).
    pixel_weights: optional weights for the rebalanced AuC (see `auc_ab`); a callable gets the
      true ab in Lab units. Must be static under jit if it is a callable (close over it).

  Returns:
    {psnr, ssim, colorfulness, delta_colorfulness, colorfulness_bias, ab_error, auc
     [, auc_rebalanced]} for the prediction, the same keys prefixed `gray_` for ab = 0, and
    `true_colorfulness`. Both RGB images are rebuilt from the same L through Lab -> sRGB
    (clipped to [0, 1]), so PSNR/SSIM measure only the chroma error, and the "truth" is the
    Lab round trip of the photo (within float32 rounding of the original RGB).
  """
  true_ab = lab.denormalize_ab(true_ab_norm)
  true_rgb = lab.model_outputs_to_rgb(l_norm, true_ab_norm)
  true_cf = colorfulness(true_rgb)
  weights = None if pixel_weights is None else _resolve_weights(pixel_weights, true_ab)
  metrics = {"true_colorfulness": true_cf}
  metrics.update(_score("", l_norm, pred_ab_norm, true_rgb, true_ab, true_cf, weights))
  metrics.update(_score("gray_", l_norm, jnp.zeros_like(pred_ab_norm), true_rgb, true_ab,
                        true_cf, weights))
  return metrics
