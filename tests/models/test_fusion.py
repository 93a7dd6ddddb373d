"""The global/local fusion colorizer with self-attention (colorjax/models/fusion.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image
from skimage import data

from colorjax.color.lab import uint8_to_model_inputs
from colorjax.models import GENERATORS, build_generator
from colorjax.models import fusion
from colorjax.training import objectives
from tests.helpers.models import RNGS, key, random_lightness


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
    GENERATORS.get("fusion_attention")(width=8).init(RNGS, random_lightness(36), train=False)


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


def _photo_batch(size=32):
  photos = [data.astronaut(), data.chelsea()]
  small = [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in photos]
  return uint8_to_model_inputs(jnp.asarray(np.stack(small)))


@pytest.mark.slow  # ~13 s.
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
