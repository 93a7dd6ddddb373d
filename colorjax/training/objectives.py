"""Adversarial objectives, label tricks and the losses that go with them.

An `Objective` turns discriminator outputs into scalar losses. Discriminator outputs have the
batch first and any trailing shape (a global logit (B, 1), patch logits (B, h, w, 1), or an
EBGAN energy (B,)); losses average over every element, so a PatchGAN's loss is the mean over
its patches. Per-sample targets of shape (B,) broadcast over the trailing axes.

Objectives (`OBJECTIVES.get(name)`, or `make_objective(name, **fields)` to override fields):

* `vanilla` (DCGAN, Goodfellow et al. 2014): sigmoid cross-entropy on logits,
  D: BCE(D(x), t_real) + BCE(D(G), t_fake); G: the non-saturating -log sigmoid(D(G)).
* `lsgan` (Mao et al. 2017, a-b-c coding with a=0, b=1, c=1):
  D: (D(x) - t_real)^2 / 2 + (D(G) - t_fake)^2 / 2;  G: (D(G) - 1)^2 / 2.
* `wgan` (Arjovsky et al. 2017): critic, D: D(G) - D(x); G: -D(G). Train with `clip_weights`.
* `wgan_gp` (Gulrajani et al. 2017): the same losses; the trainer adds
  lambda * `gradient_penalty(...)` (lambda = 10 in the paper) to the critic loss.
* `hinge` (Lim & Ye 2017; SAGAN): D: relu(1 - D(x)) + relu(1 + D(G)); G: -D(G).
* `ebgan` (Zhao et al. 2017): D is an autoencoder returning a per-sample energy (B,);
  D: E(x) + relu(m - E(G)); G: E(G). See `EBGAN` for the scale of the margin m.

Label tricks (`label_targets`) only matter for objectives with `uses_targets` (vanilla, lsgan),
whose targets are probabilities in [0, 1].
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from colorjax.core.registry import Registry

Array = jax.Array
PyTree = Any


def _per_sample(target: Array, out: Array) -> Array:
  """Reshapes (B,) targets so they broadcast against an output of shape (B, ...)."""
  target = jnp.asarray(target, jnp.float32)
  return target.reshape(target.shape + (1,) * (out.ndim - target.ndim))


def _f32(x: Array) -> Array:
  # Losses are reduced in float32 even when the discriminator computes in bfloat16.
  return jnp.asarray(x, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Objective(abc.ABC):
  """Base class: a named pair of discriminator and generator losses.

  Attributes:
    name: the registry name.
    uses_targets: whether `d_loss` reads `real_target` / `fake_target`; only then do the label
      tricks of `label_targets` have an effect.
  """
  name: str
  uses_targets: bool

  @abc.abstractmethod
  def d_loss(self, real_out: Array, fake_out: Array, real_target: Array | float = 1.0,
             fake_target: Array | float = 0.0) -> Array:
    """Scalar discriminator (critic) loss from D's outputs on real and generated pairs."""

  @abc.abstractmethod
  def g_loss(self, fake_out: Array) -> Array:
    """Scalar adversarial generator loss from D's output on generated pairs."""


OBJECTIVES: Registry[Objective] = Registry("gan objective")


def _bce_with_logits(logits: Array, target: Array) -> Array:
  """Mean sigmoid cross-entropy; log_sigmoid keeps it finite for large |logits|."""
  logits = _f32(logits)
  target = _per_sample(target, logits) if jnp.ndim(target) else _f32(target)
  return -jnp.mean(target * jax.nn.log_sigmoid(logits)
                   + (1.0 - target) * jax.nn.log_sigmoid(-logits))


@dataclasses.dataclass(frozen=True)
class Vanilla(Objective):
  """DCGAN cross-entropy with the non-saturating generator loss."""
  name: str = "vanilla"
  uses_targets: bool = True

  def d_loss(self, real_out, fake_out, real_target=1.0, fake_target=0.0):
    return _bce_with_logits(real_out, real_target) + _bce_with_logits(fake_out, fake_target)

  def g_loss(self, fake_out):
    # -log D(G) rather than log(1 - D(G)): the latter saturates when D wins early on.
    return -jnp.mean(jax.nn.log_sigmoid(_f32(fake_out)))


def _half_squared_error(out: Array, target: Array | float) -> Array:
  out = _f32(out)
  target = _per_sample(target, out) if jnp.ndim(target) else _f32(target)
  return 0.5 * jnp.mean(jnp.square(out - target))


@dataclasses.dataclass(frozen=True)
class LSGAN(Objective):
  """Least squares GAN: D regresses real -> 1, fake -> 0; G pushes D(G) -> 1."""
  name: str = "lsgan"
  uses_targets: bool = True

  def d_loss(self, real_out, fake_out, real_target=1.0, fake_target=0.0):
    return _half_squared_error(real_out, real_target) + _half_squared_error(fake_out, fake_target)

  def g_loss(self, fake_out):
    return _half_squared_error(fake_out, 1.0)


@dataclasses.dataclass(frozen=True)
class Wasserstein(Objective):
  """WGAN critic losses (targets unused). Needs a Lipschitz constraint: clipping or a penalty."""
  name: str = "wgan"
  uses_targets: bool = False

  def d_loss(self, real_out, fake_out, real_target=1.0, fake_target=0.0):
    del real_target, fake_target  # The critic has no labels.
    return jnp.mean(_f32(fake_out)) - jnp.mean(_f32(real_out))

  def g_loss(self, fake_out):
    return -jnp.mean(_f32(fake_out))


@dataclasses.dataclass(frozen=True)
class Hinge(Objective):
  """Hinge loss (SAGAN, BigGAN): D is only pushed while a sample is inside the margin 1."""
  name: str = "hinge"
  uses_targets: bool = False

  def d_loss(self, real_out, fake_out, real_target=1.0, fake_target=0.0):
    del real_target, fake_target
    return (jnp.mean(jax.nn.relu(1.0 - _f32(real_out)))
            + jnp.mean(jax.nn.relu(1.0 + _f32(fake_out))))

  def g_loss(self, fake_out):
    return -jnp.mean(_f32(fake_out))


# Fabbri & Islam 2017 used m = 80, read here as a per-pixel MSE energy on 0-255 pixel values. The
# models here see values in [-1, 1], a 255 / 2 = 127.5 times smaller range, so squared errors are
# 127.5^2 times smaller: m = 80 / 127.5^2 ~= 4.92e-3. (Had they summed squared errors over pixels
# instead, divide its m by H * W * C as well.) (L and ab are normalised as L / 50 - 1 and ab / 110
# rather than from 0-255 RGB, so this is the matching scale, not an exact equivalence.)
SEED_000_MARGIN_0_255 = 80.0
EBGAN_DEFAULT_MARGIN = SEED_000_MARGIN_0_255 / 127.5 ** 2


@dataclasses.dataclass(frozen=True)
class EBGAN(Objective):
  """Energy-based GAN with an autoencoder discriminator.

  D returns a per-sample energy (B,): the mean squared reconstruction error of the normalised
  (L, ab) input, values in [-1, 1]. Real energies are pushed down; fake energies are pushed up
  only until they reach the margin, so fake samples with E >= margin add nothing to D's loss.

  Attributes:
    margin: m in the normalised-MSE units above; `EBGAN_DEFAULT_MARGIN` is Fabbri & Islam's
      m = 80 on the 0-255 scale converted (80 / 127.5^2).
  """
  name: str = "ebgan"
  uses_targets: bool = False
  margin: float = EBGAN_DEFAULT_MARGIN

  def d_loss(self, real_out, fake_out, real_target=1.0, fake_target=0.0):
    del real_target, fake_target
    return jnp.mean(_f32(real_out)) + jnp.mean(jax.nn.relu(self.margin - _f32(fake_out)))

  def g_loss(self, fake_out):
    return jnp.mean(_f32(fake_out))


OBJECTIVES.register("vanilla")(Vanilla())
OBJECTIVES.register("lsgan")(LSGAN())
OBJECTIVES.register("wgan")(Wasserstein())
# Same losses as WGAN; the difference (a gradient penalty instead of clipping) is the trainer's.
OBJECTIVES.register("wgan_gp")(Wasserstein(name="wgan_gp"))
OBJECTIVES.register("hinge")(Hinge())
OBJECTIVES.register("ebgan")(EBGAN())


def make_objective(name: str, **fields: Any) -> Objective:
  """The registered objective `name` with some fields replaced, e.g. `margin=` for ebgan."""
  return dataclasses.replace(OBJECTIVES.get(name), **fields) if fields else OBJECTIVES.get(name)


def label_targets(rng: Array, batch_size: int, *, smoothing: float = 0.0, noisy: bool = False,
                  flip_prob: float = 0.0) -> tuple[Array, Array]:
  """Per-sample probability targets (real (B,), fake (B,)) for vanilla / lsgan discriminators.

  With everything off the targets are 1 and 0.
  * smoothing: one-sided label smoothing (Salimans et al. 2016): real target 1 - smoothing;
    fake stays 0, since smoothing fakes rewards D for leaving mass on bad samples.
  * noisy: soft noisy labels: real ~ U[0.9, 1], fake ~ U[0, 0.1]. Exclusive with smoothing.
  * flip_prob: each sample's real and fake targets are swapped with this probability.
  The options are Python values (static under jit); `rng` is only drawn from when needed.
  """
  if noisy and smoothing:
    raise ValueError("noisy labels and one-sided smoothing are exclusive; pick one")
  if not 0.0 <= flip_prob <= 1.0:
    raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
  noise_rng, flip_rng = jax.random.split(rng)
  if noisy:
    real_rng, fake_rng = jax.random.split(noise_rng)
    real = jax.random.uniform(real_rng, (batch_size,), minval=0.9, maxval=1.0)
    fake = jax.random.uniform(fake_rng, (batch_size,), minval=0.0, maxval=0.1)
  else:
    real = jnp.full((batch_size,), 1.0 - smoothing, jnp.float32)
    fake = jnp.zeros((batch_size,), jnp.float32)
  if flip_prob > 0:
    flip = jax.random.bernoulli(flip_rng, flip_prob, (batch_size,))
    real, fake = jnp.where(flip, fake, real), jnp.where(flip, real, fake)
  return real, fake


def reconstruction_losses(pred_ab: Array, true_ab: Array) -> dict[str, Array]:
  """Mean absolute (l1) and mean squared (l2) error on normalised ab, in float32."""
  diff = _f32(pred_ab) - _f32(true_ab)
  return {"l1": jnp.mean(jnp.abs(diff)), "l2": jnp.mean(jnp.square(diff))}


def gradient_penalty(critic_fn: Callable[[Array], Array], real_ab: Array, fake_ab: Array,
                     rng: Array) -> Array:
  """WGAN-GP penalty mean_i (||grad_ab D(x_i)||_2 - 1)^2 at random real/fake interpolates.

  Only ab is interpolated: L is the shared condition, closed over in `critic_fn(ab) -> out`.
  The gradient of the summed output is taken; it equals each sample's own gradient only if
  samples do not interact inside D, so WGAN-GP critics must not use batch norm (use instance,
  layer or no norm). For a patch critic the per-sample gradient is that of its summed patches.
  Multiply by lambda (10 in Gulrajani et al.) in the trainer.
  """
  real_ab = jax.lax.stop_gradient(_f32(real_ab))
  fake_ab = jax.lax.stop_gradient(_f32(fake_ab))
  eps = jax.random.uniform(rng, (real_ab.shape[0],) + (1,) * (real_ab.ndim - 1))
  mixed = eps * real_ab + (1.0 - eps) * fake_ab
  grads = jax.grad(lambda ab: jnp.sum(_f32(critic_fn(ab))))(mixed)
  # The small constant keeps the gradient of the norm finite where grads are exactly 0.
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def clip_weights(params: PyTree, clip: float) -> PyTree:
  """WGAN weight clipping: every parameter leaf clipped to [-clip, clip] (0.01 in the paper)."""
  return jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)
