"""sRGB <-> Lab in jnp agrees with scikit-image on real photos."""

import jax.numpy as jnp
import numpy as np
import pytest
import skimage.color
import skimage.data

from colorjax.color import lab

PHOTOS = [skimage.data.astronaut, skimage.data.chelsea, skimage.data.coffee, skimage.data.rocket]


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda f: f.__name__)
def test_rgb_to_lab_matches_skimage(photo):
  rgb = photo()[..., :3] / 255.0
  expected = skimage.color.rgb2lab(rgb)
  np.testing.assert_allclose(np.asarray(lab.rgb_to_lab(jnp.asarray(rgb))), expected, atol=1e-3)


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda f: f.__name__)
def test_lab_to_rgb_matches_skimage(photo):
  reference_lab = skimage.color.rgb2lab(photo()[..., :3] / 255.0)
  expected = skimage.color.lab2rgb(reference_lab)
  got = np.asarray(lab.lab_to_rgb(jnp.asarray(reference_lab, jnp.float32)))
  np.testing.assert_allclose(got, expected, atol=1e-3)


def test_out_of_gamut_lab_is_clipped_not_nan():
  extreme = jnp.array([[0.0, 127.0, -128.0], [100.0, -128.0, 127.0], [50.0, 0.0, 0.0]])
  rgb = np.asarray(lab.lab_to_rgb(extreme))
  assert np.all(np.isfinite(rgb)) and rgb.min() >= 0 and rgb.max() <= 1


def test_model_normalisation_round_trip():
  rgb = jnp.asarray(skimage.data.astronaut()[None, :64, :64])
  l_norm, ab_norm = lab.uint8_to_model_inputs(rgb)
  assert -1 <= float(l_norm.min()) and float(l_norm.max()) <= 1
  assert float(jnp.abs(ab_norm).max()) <= 1
  back = lab.model_outputs_to_rgb(l_norm, ab_norm)
  np.testing.assert_allclose(np.asarray(back) * 255, np.asarray(rgb, np.float32), atol=0.05)
