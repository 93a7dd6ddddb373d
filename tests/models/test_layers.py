"""Shared layers (colorjax/models/layers.py), first the convolution implementation
(`config.model.conv`): chosen once, parameters unchanged.

"xla" and "im2col" must give every model the same parameter tree (checkpoints load under
either) and the same outputs within float rounding; "auto" resolves for the target platforms
where the models are built, never from the backend at trace time. Then spectral norm, norms by
name, and the im2col and sub-pixel transposed convolutions against Flax's.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import build_discriminator, build_generator, layers
from colorjax.training import run_setup
from tests.helpers import tiny_config

# rbg keys: Flax init derives one key per parameter, and compiling threefry derivations takes
# most of a small test's time on CPU.
key = functools.partial(jax.random.key, impl="rbg")

GENERATORS = {
    "unet": ({"num_downs": 3, "features": 4, "max_features": 8}, 16),
    "unet_resize_conv": ({"num_downs": 3, "features": 4, "max_features": 8,
                          "upsampling": "resize_conv"}, 16),
    "plain": ({"width": 4}, 16),
    "fusion_attention": ({"width": 4, "num_classes": 3}, 16),
    "zhang_cic": ({"width": 4, "num_bins": 7}, 16),
}
DISCRIMINATORS = {
    "patchgan": {"features": 4, "num_layers": 2, "spectral_norm": True},
    "global": {"width": 4, "num_downsamples": 2, "norm": "layer"},
    "ebgan_ae": {"width": 4, "num_levels": 2},
}


def _assert_same_abstract_tree(a, b):
  """Same paths, shapes and dtypes: a checkpoint of one restores into the other."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  shapes = lambda tree: [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]
  assert shapes(a) == shapes(b)


def _assert_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y),
                                                       rtol=1e-4, atol=1e-4), a, b)


def _compare(build, *inputs, train=False):
  """Initialises the "xla" model once and runs both implementations on its variables."""
  models = {impl: build(impl) for impl in layers.CONV_IMPLS}
  assert {impl: m.conv for impl, m in models.items()} == {i: i for i in layers.CONV_IMPLS}
  rngs = {"params": key(1), "dropout": key(2)}
  init = lambda model: functools.partial(model.init, rngs, train=False)
  _assert_same_abstract_tree(jax.eval_shape(init(models["xla"]), *inputs),
                             jax.eval_shape(init(models["im2col"]), *inputs))
  variables = jax.jit(init(models["xla"]))(*inputs)
  outputs = {}
  for impl, model in models.items():
    # Training mode (discriminators): spectral norm's power iteration sees the same kernel.
    apply = functools.partial(model.apply, train=train, mutable=["batch_stats"] if train else [])
    outputs[impl] = jax.jit(apply)(variables, *inputs)[0]
  _assert_close(outputs["xla"], outputs["im2col"])


@pytest.mark.slow  # 3-10 s per generator.
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_have_the_same_parameters_and_outputs_under_both(name):
  kwargs, size = GENERATORS[name]
  registered = "unet" if name.startswith("unet") else name
  l = jax.random.uniform(key(0), (2, size, size, 1), minval=-1, maxval=1)
  _compare(lambda impl: build_generator(registered, kwargs, jnp.float32, conv=impl), l)


@pytest.mark.slow  # 2-6 s per discriminator.
@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminators_have_the_same_parameters_and_outputs_under_both(name):
  l = jax.random.uniform(key(0), (2, 16, 16, 1), minval=-1, maxval=1)
  ab = jax.random.uniform(key(1), (2, 16, 16, 2), minval=-1, maxval=1)
  _compare(lambda impl: build_discriminator(name, DISCRIMINATORS[name], jnp.float32, conv=impl),
           l, ab, train=True)


def test_auto_resolves_for_the_target_platforms():
  assert layers.resolve_conv("auto", ["cpu"]) == "im2col"
  # One artifact for the CPU and a GPU gets the GPU's convolution.
  assert layers.resolve_conv("auto", ["cpu", "cuda"]) == "xla"
  assert layers.resolve_conv("auto", ["tpu"]) == "xla"
  assert layers.resolve_conv("auto") == ("im2col" if jax.default_backend() == "cpu" else "xla")
  assert layers.resolve_conv("xla", ["cpu"]) == "xla"  # An explicit choice is kept.
  assert layers.resolve_conv("im2col", ["cuda"]) == "im2col"
  with pytest.raises(ValueError, match="valid: auto, xla, im2col"):
    layers.resolve_conv("winograd")


def test_builders_resolve_model_conv_once_for_both_models():
  config = tiny_config("lsgan")
  local = "im2col" if jax.default_backend() == "cpu" else "xla"
  parts = run_setup.make_step_parts(config)
  assert config.model.conv == "auto"
  assert parts.generator.conv == local and parts.discriminator.conv == local
  with config.unlocked():
    config.model.conv = "xla"
  parts = run_setup.make_step_parts(config)
  assert parts.generator.conv == "xla" and parts.discriminator.conv == "xla"
  with config.unlocked():
    config.model.conv = "fft"
  with pytest.raises(ValueError, match="unknown convolution implementation 'fft'"):
    run_setup.validate_config(config)


def test_conv_is_not_a_model_option():
  with pytest.raises(ValueError, match="model.conv"):
    build_generator("unet", {"conv": "xla"}, jnp.float32)


# ------------------------------------------------------------------------------------------
# The layers themselves: spectral norm, norms by name, the im2col and sub-pixel convolutions.
# ------------------------------------------------------------------------------------------
def test_spectral_norm_conv_has_unit_top_singular_value():
  conv = layers.Conv(8, (3, 3), spectral_norm=True)
  x = jax.random.normal(key(0), (1, 6, 6, 4))
  variables = conv.init(key(1), x)
  params, stats = variables["params"], variables["batch_stats"]
  apply = jax.jit(lambda s: conv.apply({"params": params, "batch_stats": s}, x, update_stats=True,
                                       mutable=["batch_stats"]))
  for _ in range(30):  # One power iteration per training-mode call.
    y, updates = apply(stats)
    stats = updates["batch_stats"]
  kernel = np.asarray(params["conv"]["kernel"]).reshape(-1, 8)
  sigma = float(jax.tree.leaves({k: v for k, v in stats["spectral_norm"].items()
                                 if k.endswith("sigma")})[0])
  assert sigma == pytest.approx(np.linalg.svd(kernel, compute_uv=False)[0], rel=1e-3)
  assert np.linalg.svd(kernel / sigma, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)
  # The layer really convolves with the normalised kernel.
  reference = nn.Conv(8, (3, 3), padding="SAME").apply(
      {"params": {"kernel": params["conv"]["kernel"] / sigma, "bias": params["conv"]["bias"]}}, x)
  np.testing.assert_allclose(y, reference, rtol=1e-3, atol=1e-4)


def test_norm_by_name():
  x = jax.random.normal(key(0), (2, 4, 4, 3))
  x2 = x.at[1].multiply(5.0)
  for kind in layers.NORMS:
    norm = layers.Norm(kind)
    variables = norm.init(key(0), x, train=False)
    y, _ = norm.apply(variables, x, train=True, mutable=["batch_stats"])
    y2, _ = norm.apply(variables, x2, train=True, mutable=["batch_stats"])
    # Only batch norm lets one sample change another's output (why WGAN-GP critics avoid it).
    assert np.allclose(y[0], y2[0], atol=1e-5) == (kind != "batch")
  with pytest.raises(ValueError, match="valid names"):
    layers.Norm("group").init(key(0), x, train=False)


@pytest.mark.slow  # ~8 s in all.
@pytest.mark.parametrize("kernel,strides,padding,dilation", [
    ((4, 4), (2, 2), ((1, 1), (1, 1)), (1, 1)), ((3, 3), (1, 1), "SAME", (1, 1)),
    ((4, 4), (2, 2), "SAME", (1, 1)), ((3, 3), (1, 1), "SAME", (2, 2)),
    ((4, 4), (1, 1), ((1, 1), (1, 1)), (1, 1))])
def test_im2col_conv_equals_xla_conv_with_gradients(kernel, strides, padding, dilation):
  from colorjax.models.layers import Conv2d
  x = jax.random.normal(jax.random.key(1), (2, 9, 8, 3))
  reference = nn.Conv(5, kernel, strides=strides, padding=padding, kernel_dilation=dilation)
  fast = Conv2d(5, kernel, strides, padding, kernel_dilation=dilation, conv="im2col")
  variables = reference.init(jax.random.key(0), x)
  # im2col really is a matmul, with no convolution left in the program.
  jaxpr = str(jax.make_jaxpr(fast.apply)(variables, x))
  assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr
  np.testing.assert_allclose(fast.apply(variables, x), reference.apply(variables, x), atol=1e-5)
  loss = lambda module: lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
               jax.grad(loss(fast), argnums=(0, 1))(variables, x),
               jax.grad(loss(reference), argnums=(0, 1))(variables, x))


@pytest.mark.slow  # ~4 s in all.
@pytest.mark.parametrize("conv", layers.CONV_IMPLS)
def test_sub_pixel_transposed_conv_equals_flax_conv_transpose_with_gradients(conv):
  from colorjax.models.layers import ConvTranspose2x
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 3))
  reference = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding="SAME")
  variables = reference.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # A non-zero bias too.
  fast = ConvTranspose2x(4, conv=conv)
  np.testing.assert_allclose(fast.apply(variables, x), reference.apply(variables, x), atol=1e-5)
  loss = lambda module: lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
               jax.grad(loss(fast), argnums=(0, 1))(variables, x),
               jax.grad(loss(reference), argnums=(0, 1))(variables, x))
