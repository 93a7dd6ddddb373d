"""Tests for the zhang_cic generator and its rebalanced classification loss on real photos."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from colorjax.color import decode, gamut, lab, rebalance, soft_encoding
from colorjax.models import build_generator, zhang
from tests.helpers import skimage_photos


WIDTH = 16


def _init_key() -> jax.Array:
  # RngBitGenerator keys compile several times faster on CPU than threefry for the ~50
  # parameter initialisers; no test here depends on the particular random stream.
  return jax.random.key(0, impl="rbg")


@pytest.fixture(scope="module")
def bins() -> np.ndarray:
  return gamut.gamut_bins(10)


@pytest.fixture(scope="module")
def model_and_variables(bins):
  model = build_generator("zhang_cic", {"width": WIDTH, "num_bins": len(bins)}, jnp.float32)
  # A fully convolutional model: variables made at 32 px serve every size.
  variables = jax.jit(model.init, static_argnames="train")(
      _init_key(), jnp.zeros((1, 32, 32, 1)), train=False)
  return model, variables


@pytest.mark.slow  # 4-7 s per size.
@pytest.mark.parametrize("size", [32, 64])
def test_output_shapes(model_and_variables, size):
  model, variables = model_and_variables
  assert set(variables) == {"params", "batch_stats"}
  l = jnp.linspace(-1, 1, 2 * size * size).reshape(2, size, size, 1)
  out = jax.jit(model.apply, static_argnames="train")(variables, l, train=False)
  assert out["ab"].shape == (2, size, size, 2)
  assert out["logits"].shape == (2, *zhang.logits_size((size, size)), 261)
  assert out["logits"].shape[1:3] == (size // 4, size // 4)
  assert float(jnp.max(jnp.abs(out["ab"]))) <= 1.0
  assert out["ab"].dtype == out["logits"].dtype == jnp.float32
  with pytest.raises(ValueError, match="divisible by 8"):
    model.apply(variables, l[:, :size - 4], train=False)


def test_paper_widths_and_bfloat16():
  model = build_generator("zhang_cic", {"num_bins": 313}, jnp.bfloat16)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False))
  params = shapes["params"]
  assert params["conv1_1"]["kernel"].shape == (3, 3, 1, 64)
  assert params["conv4_1"]["kernel"].shape == (3, 3, 256, 512)
  assert params["conv8_1"]["kernel"].shape == (4, 4, 512, 256)
  assert params["class_head"]["kernel"].shape == (1, 1, 256, 313)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


@pytest.mark.slow  # ~21 s.
def test_a_few_adam_steps_lower_the_rebalanced_loss_onskimage_photos(model_and_variables, bins):
  photos = skimage_photos(32)
  prior = rebalance.estimate_prior([photos], bins)
  l, ab_norm = lab.uint8_to_model_inputs(jnp.asarray(photos))
  ab_target = soft_encoding.area_downsample(lab.denormalize_ab(ab_norm), zhang.logits_size((32, 32)))
  class_weights = jnp.asarray(prior.weights)

  model, variables = model_and_variables
  optimizer = optax.adam(1e-3)

  def loss_fn(params, batch_stats):
    out, updates = model.apply({"params": params, "batch_stats": batch_stats}, l, train=True,
                               mutable=["batch_stats"])
    loss = soft_encoding.rebalanced_cross_entropy(out["logits"], ab_target, bins, class_weights)
    return loss, updates["batch_stats"]

  @jax.jit
  def step(params, batch_stats, opt_state):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  params, batch_stats = variables["params"], variables["batch_stats"]
  opt_state = optimizer.init(params)
  losses = []
  for _ in range(8):
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state)
    losses.append(float(loss))
  final, _ = jax.jit(loss_fn)(params, batch_stats)
  assert np.all(np.isfinite(losses))
  # Five photos are easy to fit: eight steps must cut the loss by a fifth.
  assert float(final) < 0.8 * losses[0], losses
  ab = decode.logits_to_ab_norm(
      model.apply({"params": params, "batch_stats": batch_stats}, l, train=False)["logits"],
      bins, (32, 32))
  assert ab.shape == ab_norm.shape
