"""The plain and fusion_attention generators, image-level discriminators and shared layers."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image
from skimage import data

from colorjax.color.lab import uint8_to_model_inputs
from colorjax.models import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator
from colorjax.models import fusion, layers
from colorjax.training import objectives

GENERATOR_KWARGS = {
    "plain": {"width": 8},
    "fusion_attention": {"width": 8, "num_classes": 5, "dropout": 0.2, "num_attention_blocks": 2},
}
# rbg keys: Flax init derives one key per parameter, and with the default threefry PRNG
# compiling those derivations takes most of a test's time on CPU.
key = functools.partial(jax.random.key, impl="rbg")
RNGS = {"params": key(0), "dropout": key(1)}


def _lightness(size, batch=2, seed=0):
  return jax.random.uniform(key(seed), (batch, size, size, 1), minval=-1, maxval=1)


def test_new_models_are_registered():
  assert {"plain", "fusion_attention"} <= set(GENERATORS.names())
  assert {"global", "ebgan_ae"} <= set(DISCRIMINATORS.names())


def _init_and_train_apply(model, *inputs):
  """Initialises and runs one training-mode forward pass, jitted as one program (fast on CPU)."""
  def run(*inputs):
    variables = model.init(RNGS, *inputs, train=False)
    return model.apply(variables, *inputs, train=True, mutable=["batch_stats"],
                       rngs={"dropout": key(2)})
  return jax.jit(run)(*inputs)


@pytest.mark.parametrize("name", sorted(GENERATOR_KWARGS))
@pytest.mark.parametrize("size", [32, 64])
def test_generator_returns_bounded_ab_of_input_size(name, size):
  model = build_generator(name, GENERATOR_KWARGS[name], jnp.float32)
  out, updates = _init_and_train_apply(model, _lightness(size))
  ab = np.asarray(out["ab"])
  assert ab.shape == (2, size, size, 2)
  assert np.all(np.isfinite(ab)) and np.abs(ab).max() <= 1.0 and ab.std() > 0
  assert "batch_stats" in updates
  if name == "fusion_attention":
    assert out["class_logits"].shape == (2, 5)


@pytest.mark.parametrize("size", [128, 256])
def test_fusion_attention_shapes_at_large_sizes(size):
  model = GENERATORS.get("fusion_attention")(width=64, num_classes=10)
  l = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(RNGS, x, train=False), l)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, l)
  assert out["ab"].shape == (1, size, size, 2)
  assert out["class_logits"].shape == (1, 10)
  # Global pooling keeps the parameter count independent of the image size.
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == sum(
      p.size for p in jax.tree.leaves(jax.eval_shape(
          lambda x: model.init(RNGS, x, train=False),
          jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32))["params"]))


def test_generators_reject_indivisible_sizes():
  with pytest.raises(ValueError, match="divisible by 8"):
    GENERATORS.get("fusion_attention")(width=8).init(RNGS, _lightness(36), train=False)


def test_bfloat16_computation_keeps_float32_params():
  model = build_generator("fusion_attention", {"width": 8}, jnp.bfloat16)
  l = jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(RNGS, x, train=False), l)
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, l)
  assert out["ab"].dtype == jnp.bfloat16


def test_self_attention_starts_as_identity_and_mixes_positions_with_gamma():
  block = fusion.SelfAttention()
  x = jax.random.normal(key(0), (1, 4, 4, 16))
  params = block.init(key(1), x)["params"]
  assert float(params["gamma"]) == 0.0
  np.testing.assert_array_equal(block.apply({"params": params}, x), x)
  params = {**params, "gamma": jnp.float32(1.0)}
  y = block.apply({"params": params}, x)
  # With gamma on, changing one position changes the output at every other position.
  x2 = x.at[0, 0, 0].add(1.0)
  y2 = block.apply({"params": params}, x2)
  assert float(jnp.abs(y2 - y)[0, 3, 3].max()) > 0


def _pair(size, batch=2):
  ab = jax.random.uniform(key(5), (batch, size, size, 2), minval=-1, maxval=1)
  return _lightness(size, batch), ab


@pytest.mark.parametrize("kwargs", [
    {"width": 8},
    {"width": 8, "norm": "layer"},
    {"width": 8, "norm": "none", "spectral_norm": True},
])
def test_global_discriminator_returns_one_logit_per_image(kwargs):
  disc = build_discriminator("global", kwargs, jnp.float32)
  out, _ = _init_and_train_apply(disc, *_pair(32))
  assert out.shape == (2, 1)


def test_ebgan_autoencoder_returns_nonnegative_energy_per_sample():
  disc = build_discriminator("ebgan_ae", {"width": 8}, jnp.float32)
  l, ab = _pair(32, batch=3)
  variables = disc.init(key(0), l, ab, train=False)
  energy = disc.apply(variables, l, ab, train=False)
  assert energy.shape == (3,) and bool(jnp.all(energy >= 0))
  # Each sample's energy is its own: changing sample 0 leaves sample 1 in eval mode untouched.
  energy2 = disc.apply(variables, l, ab.at[0].set(0.0), train=False)
  assert float(energy2[0]) != float(energy[0]) and float(energy2[1]) == float(energy[1])
  loss = objectives.OBJECTIVES.get("ebgan").d_loss(energy, energy)
  assert loss.shape == ()


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


def _photo_batch(size=32):
  photos = [data.astronaut(), data.chelsea()]
  small = [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in photos]
  return uint8_to_model_inputs(jnp.asarray(np.stack(small)))


def test_fusion_attention_adam_steps_lower_l1_on_photos():
  l, ab = _photo_batch()
  model = GENERATORS.get("fusion_attention")(width=8)
  variables = jax.jit(lambda x: model.init(RNGS, x, train=False))(l)
  tx = optax.adam(3e-3)

  def loss_fn(params, stats):
    out, updates = model.apply({"params": params, "batch_stats": stats}, l, train=True,
                               mutable=["batch_stats"])
    return objectives.reconstruction_losses(out["ab"], ab)["l1"], updates["batch_stats"]

  @jax.jit
  def step(params, stats, opt_state):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  params, stats = variables["params"], variables["batch_stats"]
  opt_state = tx.init(params)
  losses = []
  for _ in range(15):
    params, stats, opt_state, loss = step(params, stats, opt_state)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.7 * losses[0]


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
