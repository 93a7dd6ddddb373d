"""What a user sees: a colorizer's output on whole photos, scored against the originals.

`score_photos` colorizes full-size photos through the public `Colorizer` (the path colorize,
serve and export take) and measures, per photo:

* PSNR (dB) of the colorized photo against the original, and of the gray baseline. The output
  keeps the input's own lightness, so the difference is chroma only.
* Hasler & Suesstrunk (2003) colourfulness of the output and of the original: a sepia or
  desaturated output scores far below the original.
* `checkerboard`: period-2 ab energy in flat regions at the model's resolution
  (`metrics.checkerboard`), the footprint of untrained or badly trained transposed
  convolutions (Odena et al. 2016).

The docs' pictures (`docs/make_pictures.py`) and the output tests
(`tests/end_to_end/test_quality.py`) both use it, so the numbers in README are the ones the tests
bound.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import inference
from colorjax.color import lab
from colorjax.evals import metrics


@dataclasses.dataclass(frozen=True)
class PhotoScore:
  psnr: float
  gray_psnr: float
  colorfulness: float
  true_colorfulness: float
  checkerboard: float
  true_checkerboard: float


def _as_float_rgb(image: np.ndarray) -> np.ndarray:
  image = inference.as_hwc(image)
  rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image, 3, axis=-1)
  return rgb.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 65535.0)


def render_ab(colorizer: inference.Colorizer, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(L in [0, 100], predicted ab in Lab units), (1, R, R, ·) at the model's render size."""
  _, l_norm = inference.prepare(jnp.asarray(inference.as_hwc(photo)), colorizer.render_size)
  ab = colorizer.predict_ab(l_norm[None])
  return np.asarray(lab.denormalize_l(l_norm))[None], np.asarray(lab.denormalize_ab(ab))


def true_render_ab(photo: np.ndarray, render_size: int) -> np.ndarray:
  """The original's ab resized as the model's input is, (1, R, R, 2) in Lab units."""
  ab = lab.rgb_to_lab(jnp.asarray(_as_float_rgb(photo)))[..., 1:]
  # Resized as `inference.prepare` resizes L for the model.
  return np.asarray(jax.image.resize(ab, (render_size, render_size, 2), "linear",
                                     antialias=True))[None]


def score_photo(colorizer: inference.Colorizer, photo: np.ndarray,
                colorized: np.ndarray | None = None) -> PhotoScore:
  """Scores `colorizer(photo)` (or an already computed `colorized`) against `photo`."""
  truth = _as_float_rgb(photo)
  out = _as_float_rgb(colorizer(photo) if colorized is None else colorized)
  gray = np.asarray(lab.gray_rgb(jnp.asarray((truth * 255 + 0.5).astype(np.uint8))[None]))[0]
  l_render, ab = render_ab(colorizer, photo)
  true_ab = true_render_ab(photo, colorizer.render_size)
  both = np.stack([truth, out])
  psnr = np.asarray(metrics.psnr(jnp.asarray(out[None]), jnp.asarray(truth[None])))[0]
  gray_psnr = np.asarray(metrics.psnr(jnp.asarray(gray[None]), jnp.asarray(truth[None])))[0]
  cf_true, cf_out = np.asarray(metrics.colorfulness(jnp.asarray(both)))
  return PhotoScore(
      psnr=float(psnr), gray_psnr=float(gray_psnr), colorfulness=float(cf_out),
      true_colorfulness=float(cf_true),
      checkerboard=float(metrics.checkerboard(jnp.asarray(ab), jnp.asarray(l_render))[0]),
      true_checkerboard=float(metrics.checkerboard(jnp.asarray(true_ab),
                                                   jnp.asarray(l_render))[0]))


def score_photos(colorizer: inference.Colorizer,
                 photos: Sequence[np.ndarray]) -> list[PhotoScore]:
  return [score_photo(colorizer, photo) for photo in photos]
