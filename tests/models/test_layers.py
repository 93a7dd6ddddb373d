"""The convolution implementation (`config.model.conv`): chosen once, parameters unchanged.

"xla" and "im2col" must give every model the same parameter tree (checkpoints load under
either) and the same outputs within float rounding; "auto" resolves for the target platforms
where the models are built, never from the backend at trace time.
"""

import functools

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


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_have_the_same_parameters_and_outputs_under_both(name):
  kwargs, size = GENERATORS[name]
  registered = "unet" if name.startswith("unet") else name
  l = jax.random.uniform(key(0), (2, size, size, 1), minval=-1, maxval=1)
  _compare(lambda impl: build_generator(registered, kwargs, jnp.float32, conv=impl), l)


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
