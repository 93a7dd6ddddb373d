"""The Colorizer (colorjax/inference.py): arrays of any size and kind, batches, hints, and the
onnxruntime backend against JAX's."""

import os

import jax
import numpy as np
import pytest
import skimage.color
import skimage.data

from colorjax import inference
from colorjax.onnx import runtime
from tests.helpers import GENERATOR_CONFIGS, odd_inputs, random_colorizer


@pytest.fixture(scope="module")
def workdir(trained_tiny):
  return trained_tiny("lsgan")


@pytest.fixture(scope="module")
def colorizer(workdir):
  return inference.Colorizer.from_workdir(workdir)


def lightness(rgb: np.ndarray) -> np.ndarray:
  return skimage.color.rgb2lab(rgb[..., :3])[..., 0]


def chroma(rgb: np.ndarray) -> np.ndarray:
  ab = skimage.color.rgb2lab(rgb[..., :3])[..., 1:]
  return np.hypot(ab[..., 0], ab[..., 1])


@pytest.mark.slow  # A trained model (conftest's trained_tiny, ~40 s).
def test_workdir_alone_rebuilds_the_model(workdir, colorizer):
  assert os.path.isfile(os.path.join(workdir, "config.json"))
  assert colorizer.step == 2 and colorizer.render_size == 16
  with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
    inference.Colorizer.from_workdir(workdir, step=7)


@pytest.mark.slow  # A trained model.
def test_any_size_keeps_shape_lightness_and_gets_colour(colorizer):
  photo = skimage.data.astronaut()[:301, :457]  # Odd sizes, 3:2-ish aspect.
  out = colorizer(photo)
  assert out.shape == photo.shape and out.dtype == np.uint8
  # Full-resolution L is the input's: the rendering at 16 px only supplies chroma.
  diff = np.abs(lightness(out) - lightness(photo))
  assert np.mean(diff) < 0.5 and np.percentile(diff, 99) < 3.0, (diff.mean(), diff.max())
  assert np.mean(chroma(out)) > 1.0  # A gray output would have chroma ~0.


@pytest.mark.slow  # A trained model.
def test_gray_16_bit_and_rgba_inputs(colorizer):
  photo = skimage.data.coffee()[:200, :260]
  gray8 = np.round(skimage.color.rgb2gray(photo) * 255).astype(np.uint8)
  gray16 = np.round(skimage.color.rgb2gray(photo) * 65535).astype(np.uint16)
  alpha = np.tile(np.linspace(0, 255, photo.shape[1]).astype(np.uint8), (photo.shape[0], 1))
  rgba = np.concatenate([photo, alpha[..., None]], axis=-1)

  for image in (gray8, gray8[..., None]):
    out = colorizer(image)
    assert out.shape == photo.shape and out.dtype == np.uint8
  out16 = colorizer(gray16)
  assert out16.shape == photo.shape and out16.dtype == np.uint16
  # 16-bit and 8-bit versions of one photo give the same picture, to 8-bit rounding.
  out8 = colorizer(gray8)
  assert np.abs(out16.astype(np.int64) // 257 - out8).mean() < 1.5
  out_rgba = colorizer(rgba)
  assert out_rgba.shape == rgba.shape
  np.testing.assert_array_equal(out_rgba[..., 3], alpha)


@pytest.mark.slow  # A trained model.
def test_batch_matches_single_calls(colorizer):
  photos = [skimage.data.astronaut()[:120, :200], skimage.data.chelsea(), np.zeros((1, 1), np.uint8)]
  batched = colorizer.colorize_batch(photos)
  for photo, got in zip(photos, batched):
    single = colorizer(photo)
    assert got.shape[:2] == photo.shape[:2]
    assert np.abs(got.astype(int) - single).max() <= 1


@pytest.mark.slow  # A trained model.
def test_bad_arrays_are_refused(colorizer):
  with pytest.raises(TypeError, match="uint8 or uint16"):
    colorizer(np.zeros((8, 8, 3), np.float32))
  with pytest.raises(ValueError, match="got shape"):
    colorizer(np.zeros((8, 8, 2), np.uint8))


# ------------------------------------------------------------------------------------------
# Hints (colorjax/color/hints.py), on the tiny hint recipe's checkpoint (hints_colorizer).
# ------------------------------------------------------------------------------------------
@pytest.mark.slow  # A trained hint model (~70 s).
def test_no_hints_is_the_automatic_result_and_hints_change_it(hints_colorizer):
  photo = skimage.data.astronaut()[:150, :200]
  automatic = hints_colorizer(photo)
  np.testing.assert_array_equal(hints_colorizer(photo, hints=None), automatic)
  np.testing.assert_array_equal(hints_colorizer(photo, hints=[]), automatic)
  hinted = hints_colorizer(photo, hints=[(100, 75, (255, 0, 0)), (10, 140, (0, 0, 255))])
  assert hinted.shape == photo.shape and not np.array_equal(hinted, automatic)
  # A batch with and without hints gives each image what a single call gives it.
  both = hints_colorizer.colorize_batch([photo, photo], [None, [(100, 75, (255, 0, 0)),
                                                         (10, 140, (0, 0, 255))]])
  np.testing.assert_array_equal(both[0], automatic)
  assert np.abs(both[1].astype(int) - hinted).max() <= 1


@pytest.mark.slow  # A trained hint model.
def test_bad_hints_are_refused(hints_colorizer):
  photo = np.zeros((40, 60, 3), np.uint8)
  for hints_, message in [([(70, 5, (1, 2, 3))], "outside"), ([(5, 5, (256, 0, 0))], "0-255"),
                          ([(5, 5)], "not \\(x, y, \\(r, g, b\\)\\)")]:
    with pytest.raises(ValueError, match=message):
      hints_colorizer(photo, hints=hints_)


def test_hint_colour_is_the_picked_colours_ab():
  (x, y, a, b), = inference.hint_lab([(3, 4, (200, 30, 40))])
  expected = skimage.color.rgb2lab(np.array([[[200, 30, 40]]], np.uint8))[0, 0, 1:]
  assert (x, y) == (3.0, 4.0) and np.allclose((a, b), expected, atol=0.05)


# ------------------------------------------------------------------------------------------
# The onnxruntime backend (the onnx extra), on every generator with random weights.
# ------------------------------------------------------------------------------------------
@pytest.mark.slow  # Every generator through ONNX Runtime (7-26 s each).
@pytest.mark.parametrize("name", GENERATOR_CONFIGS)
def test_onnxruntime_backend_matches_jax_on_every_kind_of_input(name):
  pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
  colorizer = random_colorizer(name)
  backend = runtime.OnnxRuntimeColorizer(colorizer.config, colorizer.generator,
                                         colorizer.decode, colorizer.variables, colorizer.step)
  inputs = odd_inputs()
  for image, want, got in zip(inputs, colorizer.colorize_batch(inputs),
                              backend.colorize_batch(inputs)):
    assert got.shape == want.shape and got.dtype == want.dtype == image.dtype
    level = 257 if image.dtype == np.uint16 else 1
    assert np.abs(got.astype(int) - want).max() <= level


def test_auto_backend_is_onnxruntime_on_the_cpu():
  pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
  assert inference.resolve_backend("auto") == ("onnxruntime" if jax.default_backend() == "cpu"
                                               else "jax")
  with pytest.raises(ValueError, match="onnxruntime"):
    inference.resolve_backend("tflite")


@pytest.mark.slow  # Builds a random colorizer (~7 s).
def test_inference_uses_xla_convolutions_unless_told():
  """im2col pays for CPU gradients only; a forward pass takes XLA's convolution."""
  assert inference.inference_conv("auto", ["cpu"]) == inference.inference_conv("auto") == "xla"
  assert inference.inference_conv("im2col") == "im2col"
  colorizer = random_colorizer("lsgan")
  assert colorizer.with_conv("auto").generator.conv == "xla"


@pytest.mark.slow  # A trained model (conftest's trained_tiny) and three ONNX conversions.
def test_a_model_the_onnx_converter_cannot_write_runs_in_jax_or_fails_in_one_line(
    workdir, colorizer, monkeypatch, tmp_path, capsys):
  from colorjax import export  # pylint: disable=g-import-not-at-top
  from colorjax.core import errors  # pylint: disable=g-import-not-at-top
  from colorjax.onnx import rules  # pylint: disable=g-import-not-at-top
  # The real converter without its convolution rule: the generator hits its bounds.
  monkeypatch.delitem(rules.RULES, "conv_general_dilated")
  photo = skimage.data.astronaut()[::8, ::8]
  auto = inference.Colorizer.from_workdir(workdir, backend="auto")
  assert not isinstance(auto, runtime.OnnxRuntimeColorizer)
  np.testing.assert_array_equal(auto(photo), colorizer(photo))  # "auto": JAX, same output.
  with pytest.raises(errors.UserError, match=r"onnxruntime backend cannot run this model "
                     r"\(no ONNX rule for the JAX primitive 'conv_general_dilated'\)"):
    inference.Colorizer.from_workdir(workdir, backend="onnxruntime")
  assert export.main([f"--workdir={workdir}", "--format=onnx", f"--out={tmp_path}"]) == 1
  err = capsys.readouterr().err
  assert ("the ONNX export cannot write this model (no ONNX rule for the JAX primitive "
          "'conv_general_dilated'); --format=stablehlo exports every model") in err
