"""Tests for colorjax.evals.metrics against scikit-image and numpy reference formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data, metrics as skm, transform

from colorjax.color import lab
from colorjax.evals import metrics


def _photo(name: str, size: int = 96) -> np.ndarray:
  """A bundled skimage photo resized to size x size, float32 RGB in [0, 1]."""
  img = getattr(data, name)()
  img = transform.resize(img, (size, size), anti_aliasing=True)
  return img.astype(np.float32)


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
  return np.stack([_photo(n) for n in ("astronaut", "chelsea", "coffee", "rocket")])


@pytest.fixture(scope="module")
def perturbed(photos: np.ndarray) -> np.ndarray:
  """Photos with noise, a colour shift and a blur-like averaging: a realistic imperfect output."""
  rng = np.random.default_rng(0)
  noisy = photos + rng.normal(0.0, 0.05, photos.shape).astype(np.float32)
  noisy[..., 0] += 0.08
  noisy = 0.5 * noisy + 0.5 * np.roll(noisy, 1, axis=2)
  return np.clip(noisy, 0.0, 1.0)


def test_psnr_matches_skimage(photos, perturbed):
  got = np.asarray(jax.jit(metrics.psnr)(perturbed, photos))
  want = [skm.peak_signal_noise_ratio(t, p, data_range=1.0) for p, t in zip(perturbed, photos)]
  assert got.shape == (4,)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_psnr_identical_images_is_capped_not_infinite(photos):
  got = np.asarray(metrics.psnr(photos, photos))
  np.testing.assert_allclose(got, 100.0)


@pytest.mark.parametrize("use_jit", [False, True])
def test_ssim_matches_skimage(photos, perturbed, use_jit):
  fn = jax.jit(metrics.ssim) if use_jit else metrics.ssim
  got = np.asarray(fn(perturbed, photos))
  want = [skm.structural_similarity(t.astype(np.float64), p.astype(np.float64), channel_axis=-1,
                                    data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
          for p, t in zip(perturbed, photos)]
  assert got.shape == (4,)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
  # The test pairs must be far from trivial agreement for the comparison to mean anything.
  assert np.all(np.asarray(want) < 0.9)


def test_ssim_non_square_and_identity(photos):
  crop = photos[:2, :40, :67]
  other = np.clip(crop[::-1] * 0.7 + 0.1, 0, 1)
  got = np.asarray(metrics.ssim(other, crop))
  want = [skm.structural_similarity(t, p, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
          for p, t in zip(other, crop)]
  np.testing.assert_allclose(got, want, atol=1e-4)
  np.testing.assert_allclose(np.asarray(metrics.ssim(crop, crop)), 1.0, atol=1e-5)


def test_ssim_rejects_tiny_images():
  with pytest.raises(ValueError, match="11x11"):
    metrics.ssim(jnp.zeros((1, 8, 20, 3)), jnp.zeros((1, 8, 20, 3)))


def _colorfulness_numpy(rgb: np.ndarray) -> float:
  rgb = rgb.astype(np.float64) * 255.0
  rg = rgb[..., 0] - rgb[..., 1]
  yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
  return (np.sqrt(rg.std() ** 2 + yb.std() ** 2)
          + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def test_colorfulness_matches_formula_and_gray_is_zero(photos):
  got = np.asarray(metrics.colorfulness(photos))
  np.testing.assert_allclose(got, [_colorfulness_numpy(p) for p in photos], rtol=1e-4)
  gray = np.repeat(photos.mean(-1, keepdims=True), 3, axis=-1)
  np.testing.assert_allclose(np.asarray(metrics.colorfulness(gray)), 0.0, atol=1e-3)


def test_colorfulness_increases_with_saturation(photos):
  gray = photos.mean(-1, keepdims=True)
  values = [np.asarray(metrics.colorfulness(np.clip(gray + s * (photos - gray), 0, 1)))
            for s in (0.0, 0.25, 0.5, 1.0)]
  for lo, hi in zip(values[:-1], values[1:]):
    assert np.all(hi > lo)


def test_delta_colorfulness_signed_and_absolute(photos):
  gray = photos.mean(-1, keepdims=True)
  dull = gray + 0.5 * (photos - gray)
  signed = np.asarray(metrics.delta_colorfulness(dull, photos, signed=True))
  absolute = np.asarray(metrics.delta_colorfulness(dull, photos))
  assert np.all(signed < 0)
  np.testing.assert_allclose(absolute, -signed)


def test_ab_error_matches_numpy():
  rng = np.random.default_rng(1)
  pred = rng.uniform(-100, 100, (3, 16, 12, 2)).astype(np.float32)
  true = rng.uniform(-100, 100, (3, 16, 12, 2)).astype(np.float32)
  want = np.linalg.norm(pred - true, axis=-1).mean(axis=(1, 2))
  np.testing.assert_allclose(np.asarray(metrics.ab_error(pred, true)), want, rtol=1e-5)


def _auc_numpy(dist: np.ndarray, thresholds: np.ndarray, weights: np.ndarray | None = None):
  """Per-threshold accuracy curve and trapezoid, materialised: the definition, per image."""
  if weights is None:
    weights = np.ones_like(dist)
  out = []
  for d, w in zip(dist, weights):
    acc = np.array([(w * (d <= t)).sum() / w.sum() for t in thresholds])
    area = np.sum(np.diff(thresholds) * (acc[1:] + acc[:-1]) / 2)
    out.append(area / (thresholds[-1] - thresholds[0]))
  return np.array(out)


def _true_ab(photos: np.ndarray) -> np.ndarray:
  return np.asarray(lab.rgb_to_lab(photos))[..., 1:]


def test_auc_perfect_prediction_is_one(photos):
  ab = _true_ab(photos)
  np.testing.assert_allclose(np.asarray(metrics.auc_ab(ab, ab)), 1.0, atol=1e-6)


def test_auc_gray_baseline_matches_closed_form(photos):
  ab = _true_ab(photos)
  dist = np.linalg.norm(ab.astype(np.float64), axis=-1)
  got = np.asarray(jax.jit(metrics.auc_ab)(np.zeros_like(ab), ab))
  np.testing.assert_allclose(got, _auc_numpy(dist, metrics.AUC_THRESHOLDS), atol=1e-5)
  assert np.all((got > 0) & (got < 1))
  # Integrating the step curve 1[d <= t] over [0, 150] exactly gives mean(1 - min(d, 150) / 150);
  # the 1-unit trapezoid differs from it by at most half a step per pixel, 0.5 / 150.
  continuous = (1 - np.minimum(dist, 150) / 150).mean(axis=(1, 2))
  np.testing.assert_allclose(got, continuous, atol=0.5 / 150)
  fine = np.asarray(metrics.auc_ab(np.zeros_like(ab), ab, thresholds=np.linspace(0, 150, 30001)))
  np.testing.assert_allclose(fine, continuous, atol=1e-4)


def test_auc_irregular_thresholds_and_large_errors():
  rng = np.random.default_rng(2)
  true = rng.uniform(-110, 110, (2, 20, 20, 2)).astype(np.float32)
  pred = true + rng.normal(0, 60, true.shape).astype(np.float32)  # Some errors exceed 150.
  thresholds = np.array([5.0, 10.0, 12.5, 40.0, 41.0, 100.0, 150.0])
  dist = np.linalg.norm(pred.astype(np.float64) - true, axis=-1)
  assert (dist > 150).any() and (dist < 5).any()
  got = np.asarray(metrics.auc_ab(pred, true, thresholds=thresholds))
  np.testing.assert_allclose(got, _auc_numpy(dist, thresholds), atol=1e-5)


def test_auc_weights(photos):
  ab = _true_ab(photos)
  pred = ab + np.random.default_rng(3).normal(0, 30, ab.shape).astype(np.float32)
  plain = np.asarray(metrics.auc_ab(pred, ab))
  ones = np.asarray(metrics.auc_ab(pred, ab, pixel_weights=np.ones(ab.shape[:-1])))
  np.testing.assert_allclose(ones, plain, atol=1e-6)
  # A callable of the true ab, with a trailing channel axis, as the rebalancing prior provides.
  weight_fn = lambda t: 1.0 / (1.0 + jnp.linalg.norm(t, axis=-1, keepdims=True))
  weighted = np.asarray(metrics.auc_ab(pred, ab, pixel_weights=weight_fn))
  dist = np.linalg.norm(pred.astype(np.float64) - ab, axis=-1)
  w = 1.0 / (1.0 + np.linalg.norm(ab.astype(np.float64), axis=-1))
  np.testing.assert_allclose(weighted, _auc_numpy(dist, metrics.AUC_THRESHOLDS, w), atol=1e-5)
  assert not np.allclose(weighted, plain, atol=1e-3)


def test_image_metrics_keys_shapes_and_baseline(photos):
  l_norm, true_ab_norm = lab.uint8_to_model_inputs(jnp.asarray(np.round(photos * 255), jnp.uint8))
  pred_ab_norm = true_ab_norm * 0.5  # A desaturated prediction.
  weight_fn = lambda t: jnp.ones(t.shape[:-1])
  fn = jax.jit(lambda l, p, t: metrics.image_metrics(l, p, t, pixel_weights=weight_fn))
  out = {k: np.asarray(v) for k, v in fn(l_norm, pred_ab_norm, true_ab_norm).items()}
  base = ["psnr", "ssim", "colorfulness", "delta_colorfulness", "colorfulness_bias", "ab_error",
          "auc", "auc_rebalanced", "checkerboard"]
  assert set(out) == {"true_colorfulness", *base, *("gray_" + k for k in base)}
  assert all(v.shape == (4,) for v in out.values())
  # The half-saturated prediction beats the gray baseline on every error measure.
  assert np.all(out["psnr"] > out["gray_psnr"])
  assert np.all(out["ab_error"] < out["gray_ab_error"])
  assert np.all(out["auc"] > out["gray_auc"])
  assert np.all(out["colorfulness_bias"] < 0)
  np.testing.assert_allclose(out["gray_colorfulness"], 0.0, atol=0.05)
  np.testing.assert_allclose(out["auc_rebalanced"], out["auc"], atol=1e-6)
  true_ab = np.asarray(lab.denormalize_ab(true_ab_norm))
  np.testing.assert_allclose(out["gray_ab_error"],
                             np.linalg.norm(true_ab, axis=-1).mean(axis=(1, 2)), rtol=1e-5)
  # The truth is rebuilt from Lab, so its colorfulness is that of the original photo.
  np.testing.assert_allclose(out["true_colorfulness"],
                             [_colorfulness_numpy(p) for p in np.round(photos * 255) / 255],
                             rtol=2e-3)


def test_checkerboard_measures_period_two_patterns_not_gradients():
  l = jnp.full((1, 32, 32, 1), 60.0)
  y, x = jnp.mgrid[:32, :32]
  ramp = jnp.stack([x * 1.5, y * -0.8], axis=-1)[None].astype(jnp.float32)
  checker = ramp + 3.0 * ((-1.0) ** (x + y))[None, ..., None]
  assert float(metrics.checkerboard(ramp, l)[0]) < 1e-4
  assert float(metrics.checkerboard(checker, l)[0]) > 10.0
  edges = l.at[:, :, 16:].set(20.0)  # Nothing is flat next to the edge: only the rest counts.
  assert float(metrics.checkerboard(checker, edges)[0]) > 10.0
