"""The jaxpr -> ONNX converter (colorjax/onnx/): its primitives, and every generator's
serving graph, with BatchNorm statistics that are not the identity, gives the live model's pixels.
The onnxruntime backend of the Colorizer: tests/test_inference.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the onnx extra")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need the onnx extra")

from colorjax import export  # noqa: E402
from colorjax.onnx import convert  # noqa: E402
from tests.helpers import GENERATOR_CONFIGS, random_colorizer  # noqa: E402


def run(model, *arrays):
  session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  names = [i.name for i in session.get_inputs()]
  return session.run(None, dict(zip(names, arrays)))


def spec(shape: str, dtype=np.float32) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(jax.export.symbolic_shape(shape), dtype)


def specs(*shapes: str) -> list[jax.ShapeDtypeStruct]:
  """float32 specs whose dimension names are shared (one symbolic scope)."""
  dims = jax.export.symbolic_shape(", ".join(shapes))
  out, start = [], 0
  for shape in shapes:
    rank = len(shape.split(","))
    out.append(jax.ShapeDtypeStruct(dims[start:start + rank], np.float32))
    start += rank
  return out


# ------------------------------------------------------------------------------------------
# Primitives.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel,strides,padding", [(3, 2, "SAME"), (4, 2, "SAME"),
                                                    (3, 1, "VALID"), (2, 3, "VALID")])
def test_transposed_convolution_becomes_conv_transpose(kernel, strides, padding):
  weights = np.random.default_rng(0).normal(size=(kernel, kernel, 3, 5)).astype(np.float32)

  def fn(x):
    return jax.lax.conv_transpose(x, weights, (strides, strides), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  model = convert.to_onnx(fn, spec("b, 7, 9, 3"), input_names=["x"])
  # Stride 1 dilates nothing: a plain convolution.
  assert ("ConvTranspose" in {n.op_type for n in model.graph.node}) == (strides > 1)
  x = np.random.default_rng(1).normal(size=(2, 7, 9, 3)).astype(np.float32)
  np.testing.assert_allclose(run(model, x)[0], fn(x), rtol=1e-4, atol=1e-4)


def test_symbolic_dimensions_reshapes_and_reductions():
  def fn(x):  # (b, h, 6): reshapes over symbolic sizes, a mean over one, an iota of another.
    flat = x.reshape(-1, 6)
    mean = jnp.mean(x, axis=1, keepdims=True)
    ramp = jnp.arange(x.shape[1], dtype=jnp.float32)[None, :, None]
    pairs = x.reshape(x.shape[0], x.shape[1] * 3, 2)
    return flat.sum(axis=1), x - mean + ramp, pairs[:, ::2] * 2.0
  model = convert.to_onnx(fn, spec("b, h, 6"), input_names=["x"])
  for shape in [(1, 4, 6), (3, 11, 6)]:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for got, want in zip(run(model, x), fn(x)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_attention_einsums_and_softmax():
  def fn(q, k):
    return jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k), axis=-1) @ k
  q = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
  k = np.random.default_rng(1).normal(size=(2, 7, 4)).astype(np.float32)
  model = convert.to_onnx(fn, *specs("b, 5, 4", "b, 7, 4"), input_names=["q", "k"])
  np.testing.assert_allclose(run(model, q, k)[0], fn(q, k), rtol=1e-5, atol=1e-5)


def test_indexing_padding_rounding_and_activations():
  def fn(x):
    left, right = jnp.split(x, [2], axis=1)
    return (left * 2, right, x[:, ::-1], jnp.pad(x, ((0, 0), (1, 2)), constant_values=3.0),
            jnp.clip(x, -0.5, 0.5), jnp.argmax(x, axis=1), jnp.round(x * 3),
            jax.lax.round(x * 3, jax.lax.RoundingMethod.AWAY_FROM_ZERO), x ** 3,
            jax.nn.sigmoid(x), jax.nn.leaky_relu(x, 0.1), jax.nn.relu(x))
  model = convert.to_onnx(fn, spec("b, 5"), input_names=["x"])
  x = np.array([[0.5, -1.5, 2.5, 0.2, -0.7], [1.5, -0.5, 0.1, 3.0, -2.5]], np.float32)
  for got, want in zip(run(model, x), fn(x)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_primitive_without_a_rule_is_named():
  with pytest.raises(NotImplementedError, match="cumsum"):
    convert.to_onnx(lambda x: jnp.cumsum(x, axis=0), spec("4"), input_names=["x"])


# ------------------------------------------------------------------------------------------
# Every generator, whole serving path.
# ------------------------------------------------------------------------------------------

@pytest.mark.slow  # Every generator's serving graph (3-15 s each).
@pytest.mark.parametrize("name", GENERATOR_CONFIGS)
def test_serving_graph_matches_live_colorizer(name):
  colorizer = random_colorizer(name)
  model = export.onnx_serving(colorizer)
  ops = {n.op_type for n in model.graph.node}
  assert "Conv" in ops and "BatchNormalization" not in ops
  for height, width in [(96, 128), (61, 45)]:
    photos = np.stack([skimage.data.astronaut()[:height, :width],
                       skimage.data.coffee()[:height, :width]])
    (got,) = run(model, photos)
    assert got.shape == photos.shape and got.dtype == np.uint8
    for photo, result in zip(photos, got):
      want = colorizer(photo)
      assert np.abs(result.astype(int) - want).max() <= 1
      assert np.abs(want.astype(int) - photo).mean() > 1  # The model changed the colours.
