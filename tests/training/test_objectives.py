"""GAN objectives, label tricks, reconstruction losses, gradient penalty and weight clipping."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import build_discriminator
from colorjax.training import objectives

BIG = 30.0  # A logit this large is a "perfect" sigmoid decision to float32 precision.


def _out(*values):
  return jnp.asarray(values, jnp.float32)


def test_registry_names():
  assert objectives.OBJECTIVES.names() == ["ebgan", "hinge", "lsgan", "vanilla", "wgan", "wgan_gp"]
  for name in objectives.OBJECTIVES.names():
    assert objectives.OBJECTIVES.get(name).name == name


def test_vanilla_known_values():
  obj = objectives.OBJECTIVES.get("vanilla")
  assert obj.uses_targets
  assert float(obj.d_loss(_out(BIG, BIG), _out(-BIG, -BIG), 1.0, 0.0)) == pytest.approx(0, abs=1e-6)
  # An undecided D (logit 0) costs log 2 on each half.
  assert float(obj.d_loss(_out(0.0), _out(0.0), 1.0, 0.0)) == pytest.approx(2 * math.log(2))
  assert float(obj.g_loss(_out(0.0))) == pytest.approx(math.log(2))
  # Non-saturating: a confidently rejected fake costs ~|logit|, not ~0.
  assert float(obj.g_loss(_out(-BIG))) == pytest.approx(BIG, rel=1e-4)


def test_lsgan_known_values():
  obj = objectives.OBJECTIVES.get("lsgan")
  assert float(obj.d_loss(_out(1.0), _out(0.0), 1.0, 0.0)) == 0.0
  assert float(obj.d_loss(_out(0.0), _out(1.0), 1.0, 0.0)) == pytest.approx(1.0)
  assert float(obj.g_loss(_out(0.0, 0.0))) == pytest.approx(0.5)
  assert float(obj.g_loss(_out(1.0))) == 0.0
  # A smoothed real target of 0.9 penalises a D that outputs 1.
  assert float(obj.d_loss(_out(1.0), _out(0.0), 0.9, 0.0)) == pytest.approx(0.5 * 0.01)


def test_per_sample_targets_broadcast_over_patches():
  obj = objectives.OBJECTIVES.get("lsgan")
  real = jnp.concatenate([jnp.ones((1, 4, 4, 1)), jnp.full((1, 4, 4, 1), 0.5)])
  fake = jnp.zeros((2, 4, 4, 1))
  assert float(obj.d_loss(real, fake, _out(1.0, 0.5), _out(0.0, 0.0))) == pytest.approx(0.0)
  assert float(obj.d_loss(real, fake, _out(1.0, 1.0), _out(0.0, 0.0))) == pytest.approx(
      0.5 * 0.5 * 0.25)


@pytest.mark.parametrize("name", ["wgan", "wgan_gp"])
def test_wasserstein_known_values(name):
  obj = objectives.OBJECTIVES.get(name)
  assert not obj.uses_targets
  assert float(obj.d_loss(_out(2.0, 4.0), _out(-1.0, -1.0), 1.0, 0.0)) == pytest.approx(-4.0)
  assert float(obj.g_loss(_out(-1.0, 3.0))) == pytest.approx(-1.0)


def test_hinge_known_values():
  obj = objectives.OBJECTIVES.get("hinge")
  assert float(obj.d_loss(_out(2.0), _out(-2.0), 1.0, 0.0)) == 0.0  # Outside the margin.
  assert float(obj.d_loss(_out(0.0), _out(0.0), 1.0, 0.0)) == pytest.approx(2.0)
  assert float(obj.d_loss(_out(0.5), _out(-0.5), 1.0, 0.0)) == pytest.approx(1.0)
  assert float(obj.g_loss(_out(-2.0))) == pytest.approx(2.0)


def test_ebgan_margin():
  default = objectives.OBJECTIVES.get("ebgan")
  assert default.margin == pytest.approx(80.0 / 127.5 ** 2)
  obj = objectives.make_objective("ebgan", margin=1.0)
  real, fake = _out(0.2, 0.2), _out(1.5, 0.4)
  assert float(obj.d_loss(real, fake, 1.0, 0.0)) == pytest.approx(0.2 + 0.6 / 2)
  assert float(obj.g_loss(fake)) == pytest.approx(0.95)
  # A fake energy at or above the margin contributes neither loss nor gradient to D.
  grad = jax.grad(lambda f: obj.d_loss(real, f, 1.0, 0.0))(_out(1.0, 3.0, 0.5))
  np.testing.assert_allclose(grad, [0.0, 0.0, -1 / 3], atol=1e-7)


def test_label_targets_defaults_and_smoothing():
  real, fake = objectives.label_targets(jax.random.key(0), 5)
  np.testing.assert_array_equal(real, np.ones(5))
  np.testing.assert_array_equal(fake, np.zeros(5))
  real, fake = objectives.label_targets(jax.random.key(0), 5, smoothing=0.1)
  np.testing.assert_allclose(real, np.full(5, 0.9))
  np.testing.assert_array_equal(fake, np.zeros(5))  # One-sided: fakes stay at 0.


def test_noisy_labels_lie_in_their_ranges():
  real, fake = objectives.label_targets(jax.random.key(1), 4096, noisy=True)
  assert 0.9 <= float(real.min()) and float(real.max()) <= 1.0
  assert 0.0 <= float(fake.min()) and float(fake.max()) <= 0.1
  assert float(real.std()) > 0.02 and float(fake.std()) > 0.02  # Actually noisy.
  with pytest.raises(ValueError, match="exclusive"):
    objectives.label_targets(jax.random.key(1), 4, noisy=True, smoothing=0.1)


def test_label_flipping():
  key = jax.random.key(2)
  real, fake = objectives.label_targets(key, 8, smoothing=0.2, flip_prob=1.0)
  np.testing.assert_allclose(real, np.zeros(8))
  np.testing.assert_allclose(fake, np.full(8, 0.8))
  # Under jit (options static), p = 0.5 flips about half, and always swaps whole pairs.
  fn = jax.jit(functools.partial(objectives.label_targets, batch_size=4096, noisy=True,
                                 flip_prob=0.5))
  real, fake = fn(key)
  flipped = np.asarray(real) <= 0.1
  assert 0.45 < flipped.mean() < 0.55
  np.testing.assert_array_equal(np.asarray(fake) >= 0.9, flipped)


def test_reconstruction_losses():
  pred = jnp.array([[0.5, -0.5], [0.0, 1.0]])
  true = jnp.array([[0.0, 0.5], [0.0, 0.0]])
  losses = objectives.reconstruction_losses(pred, true)
  assert float(losses["l1"]) == pytest.approx((0.5 + 1.0 + 0.0 + 1.0) / 4)
  assert float(losses["l2"]) == pytest.approx((0.25 + 1.0 + 0.0 + 1.0) / 4)


def _critic(ab, weight, cond, xp):
  """A tiny nonlinear critic, conditioned on a closed-over "L", in numpy or jax."""
  return xp.sum(xp.tanh(ab * weight + cond) ** 2, axis=(1, 2, 3))


def test_gradient_penalty_matches_finite_differences():
  rng = np.random.default_rng(0)
  ab = rng.normal(size=(3, 2, 2, 2))
  weight, cond = rng.normal(size=(2, 2, 2)), rng.normal(size=(3, 2, 2, 2))
  # real == fake pins the interpolate to `ab`, so the estimate does not depend on eps.
  penalty = objectives.gradient_penalty(
      lambda x: _critic(x, jnp.float32(weight), jnp.float32(cond), jnp),
      jnp.float32(ab), jnp.float32(ab), jax.random.key(0))
  h, grads = 1e-6, np.zeros_like(ab)
  for idx in np.ndindex(ab.shape):
    step = np.zeros_like(ab)
    step[idx] = h
    diff = _critic(ab + step, weight, cond, np) - _critic(ab - step, weight, cond, np)
    grads[idx] = diff[idx[0]] / (2 * h)
  norms = np.sqrt((grads ** 2).sum(axis=(1, 2, 3)))
  assert float(penalty) == pytest.approx(np.mean((norms - 1) ** 2), rel=1e-4)


def test_gradient_penalty_of_linear_critic_is_independent_of_interpolation():
  weight = jnp.full((4, 4, 2), 0.25)  # ||w||_2 = 0.25 * sqrt(32).
  real = jax.random.normal(jax.random.key(0), (2, 4, 4, 2))
  fake = jax.random.normal(jax.random.key(1), (2, 4, 4, 2))
  penalty = objectives.gradient_penalty(
      lambda x: jnp.sum(x * weight, axis=(1, 2, 3)), real, fake, jax.random.key(3))
  assert float(penalty) == pytest.approx((0.25 * math.sqrt(32) - 1) ** 2, rel=1e-5)


@pytest.mark.slow  # ~3 s.
def test_gradient_penalty_trains_a_real_critic():
  disc = build_discriminator("global", {"width": 4, "num_downsamples": 1, "norm": "layer"},
                             jnp.float32)
  l = jnp.zeros((2, 8, 8, 1))
  real = jax.random.uniform(jax.random.key(0), (2, 8, 8, 2), minval=-1, maxval=1)
  params = disc.init(jax.random.key(1), l, real, train=False)["params"]

  def penalty(p):
    return objectives.gradient_penalty(
        lambda ab: disc.apply({"params": p}, l, ab, train=True), real, -real, jax.random.key(2))

  value, grads = jax.value_and_grad(penalty)(params)
  assert np.isfinite(float(value)) and float(value) > 0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0


def test_clip_weights_bounds_every_leaf():
  disc = build_discriminator("global", {"width": 4, "num_downsamples": 1}, jnp.float32)
  params = disc.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 8, 8, 2)),
                     train=False)["params"]
  params = jax.tree.map(lambda p: p + 0.5, params)  # Push biases and scales past the clip.
  clipped = objectives.clip_weights(params, 0.01)
  assert jax.tree.structure(clipped) == jax.tree.structure(params)
  for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(clipped)):
    assert float(jnp.abs(after).max()) <= 0.01
    inside = np.abs(np.asarray(before)) <= 0.01
    np.testing.assert_array_equal(np.asarray(after)[inside], np.asarray(before)[inside])
