"""Train state, the train step and the generator's prediction: small pure functions of arrays.

The static parts of a step (modules, optimizers, loss weights) live in a frozen `StepParts`
closed over by the step; the state and the batch are the only traced arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from colorjax.color import hints as hints_lib
from colorjax.color import lab
from colorjax.training import objectives

PyTree = Any


@flax.struct.dataclass
class NetState:
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  g: NetState
  d: NetState | None  # None for objectives without a discriminator.
  # Moving average of the generator's variables, {"params", "batch_stats"}: what eval,
  # colorize, serve, export and compare use (see `update_ema`).
  ema: PyTree


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The loss weights and GAN options a step needs, as static Python values."""
  gan_weight: float = 1.0
  l1_weight: float = 100.0
  l2_weight: float = 0.0
  ce_weight: float = 0.0
  class_weight: float = 0.0
  n_critic: int = 1
  gp_weight: float = 0.0
  clip: float = 0.0
  label_smoothing: float = 0.0
  noisy_labels: bool = False
  flip_prob: float = 0.0


@dataclasses.dataclass(frozen=True)
class StepParts:
  """Everything static about a step."""
  generator: nn.Module
  discriminator: nn.Module | None
  objective: objectives.Objective | None
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation | None
  loss: LossConfig
  ema_decay: float
  # Generator outputs -> normalised ab: the regression head, or decoded logits (annealed mean).
  decode: Callable[[dict[str, jax.Array]], jax.Array] = lambda out: out["ab"]
  # (outputs, true normalised ab) -> scalar: the rebalanced cross-entropy over ab bins.
  classification_loss: Callable[[dict[str, jax.Array], jax.Array], jax.Array] | None = None
  # true ab (Lab units) -> per-pixel rebalancing weights, for the rebalanced AuC in eval.
  pixel_weights: Callable[[jax.Array], jax.Array] | None = None
  # Simulated local hints (Zhang et al. 2017) when the generator takes them, else None.
  hints: hints_lib.HintConfig | None = None


# Folded into the step's key for the hint simulation, apart from the G and D streams.
_HINT_STREAM = 0x4817


# ------------------------------------------------------------------------------------------
# State.
# ------------------------------------------------------------------------------------------
def _init_net(module: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
              *inputs: jax.Array) -> NetState:
  params_rng, dropout_rng = jax.random.split(rng)
  variables = module.init({"params": params_rng, "dropout": dropout_rng}, *inputs, train=False)
  params = variables["params"]
  return NetState(params=params, batch_stats=variables.get("batch_stats", {}),
                  opt_state=tx.init(params))


def init_state(parts: StepParts, rng: jax.Array, image_shape: tuple[int, ...]) -> TrainState:
  """A fresh state for batches of uint8 RGB images of `image_shape` (B, H, W, 3)."""
  g_rng, d_rng = jax.random.split(rng)
  l = jnp.zeros(image_shape[:-1] + (1,), jnp.float32)
  ab = jnp.zeros(image_shape[:-1] + (2,), jnp.float32)
  g = _init_net(parts.generator, parts.g_tx, g_rng, automatic_input(parts, l))
  d = _init_net(parts.discriminator, parts.d_tx, d_rng, l, ab) if parts.discriminator else None
  return TrainState(step=jnp.zeros((), jnp.int32), g=g, d=d, ema=generator_variables(g))


def generator_variables(g: NetState) -> PyTree:
  """The variables `parts.generator.apply` takes: {"params", "batch_stats"}."""
  return {"params": g.params, "batch_stats": g.batch_stats}


# ------------------------------------------------------------------------------------------
# Forward passes.
# ------------------------------------------------------------------------------------------
def automatic_input(parts: StepParts, l: jax.Array) -> jax.Array:
  """The generator's input for L alone: L itself, or L with empty hint channels."""
  if parts.hints is None or l.shape[-1] != 1:
    return l
  return hints_lib.automatic_input(l)


def training_input(parts: StepParts, l: jax.Array, true_ab: jax.Array,
                   rng: jax.Array) -> jax.Array:
  """The generator's input in a train step: L, with hints simulated from the truth (a
  geometric number of them, `hints_lib.simulate`) when the generator takes hints."""
  if parts.hints is None:
    return l
  return hints_lib.generator_input(l, *hints_lib.simulate(rng, true_ab, parts.hints))


def generate(parts: StepParts, params: PyTree, batch_stats: PyTree, l: jax.Array,
             rng: jax.Array) -> tuple[dict[str, jax.Array], PyTree]:
  """Generator in training mode: outputs and updated BatchNorm statistics."""
  out, mutated = parts.generator.apply({"params": params, "batch_stats": batch_stats}, l,
                                       train=True, rngs={"dropout": rng},
                                       mutable=["batch_stats"])
  return out, mutated.get("batch_stats", batch_stats)


def discriminate(parts: StepParts, params: PyTree, batch_stats: PyTree, l: jax.Array,
                 ab: jax.Array) -> tuple[jax.Array, PyTree]:
  out, mutated = parts.discriminator.apply({"params": params, "batch_stats": batch_stats}, l,
                                           ab, train=True, mutable=["batch_stats"])
  return out, mutated.get("batch_stats", batch_stats)


# ------------------------------------------------------------------------------------------
# Losses.
# ------------------------------------------------------------------------------------------
def discriminator_loss(parts: StepParts, params: PyTree, batch_stats: PyTree, l: jax.Array,
                       real_ab: jax.Array, fake_ab: jax.Array,
                       rng: jax.Array) -> tuple[jax.Array, tuple[PyTree, dict[str, jax.Array]]]:
  """The objective's D loss (+ gradient penalty), new BatchNorm stats and logged terms."""
  cfg = parts.loss
  label_rng, gp_rng = jax.random.split(rng)
  real_target, fake_target = objectives.label_targets(
      label_rng, l.shape[0], smoothing=cfg.label_smoothing, noisy=cfg.noisy_labels,
      flip_prob=cfg.flip_prob)
  real_out, batch_stats = discriminate(parts, params, batch_stats, l, real_ab)
  fake_out, batch_stats = discriminate(parts, params, batch_stats, l, fake_ab)
  gan = parts.objective.d_loss(real_out, fake_out, real_target, fake_target)
  terms = {"d_gan": gan, "d_real_out": jnp.mean(real_out), "d_fake_out": jnp.mean(fake_out)}
  total = gan
  if cfg.gp_weight > 0:
    critic = lambda ab: discriminate(parts, params, batch_stats, l, ab)[0]
    terms["d_gp"] = objectives.gradient_penalty(critic, real_ab, fake_ab, gp_rng)
    total = total + cfg.gp_weight * terms["d_gp"]
  terms["d_loss"] = total
  return total, (batch_stats, terms)


def image_class_loss(class_logits: jax.Array,
                     labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean softmax cross-entropy, accuracy) of the generator's image-level class logits.

  `run_setup.validate_config` and `pipeline.check_labels` ensure, before anything is traced, that a
  config with `loss.class_weight > 0` has a classifier of the dataset's size and labels.
  """
  logits = class_logits.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.mean(ce), jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def generator_loss(parts: StepParts, g_out: dict[str, jax.Array], d: NetState | None,
                   l: jax.Array, true_ab: jax.Array,
                   labels: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """G* = w_gan L_GAN + w_l1 L_L1 + w_l2 L_L2 + w_ce L_CE + w_class L_class of G's outputs.

  L_class is Iizuka et al.'s auxiliary image classification loss on the global branch: class
  labels shape the global features the colours are conditioned on.
  """
  cfg = parts.loss
  pred_ab = parts.decode(g_out)
  terms = {f"g_{k}": v for k, v in objectives.reconstruction_losses(pred_ab, true_ab).items()}
  total = cfg.l1_weight * terms["g_l1"] + cfg.l2_weight * terms["g_l2"]
  if parts.classification_loss is not None and cfg.ce_weight > 0:
    terms["g_ce"] = parts.classification_loss(g_out, true_ab)
    total = total + cfg.ce_weight * terms["g_ce"]
  if cfg.class_weight > 0:
    terms["g_class"], terms["g_class_accuracy"] = image_class_loss(g_out["class_logits"], labels)
    total = total + cfg.class_weight * terms["g_class"]
  if d is not None:
    fake_out, _ = discriminate(parts, d.params, d.batch_stats, l, pred_ab)
    terms["g_gan"] = parts.objective.g_loss(fake_out)
    total = total + cfg.gan_weight * terms["g_gan"]
  terms["g_loss"] = total
  return total, terms


# ------------------------------------------------------------------------------------------
# Updates.
# ------------------------------------------------------------------------------------------
def _apply_gradients(tx: optax.GradientTransformation, net: NetState, grads: PyTree,
                     batch_stats: PyTree) -> NetState:
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetState(params=optax.apply_updates(net.params, updates), batch_stats=batch_stats,
                  opt_state=opt_state)


def update_discriminator(parts: StepParts, d: NetState, l: jax.Array, real_ab: jax.Array,
                         fake_ab: jax.Array, rng: jax.Array) -> tuple[NetState, dict[str, Any]]:
  """One discriminator (critic) update on a batch of real and generated ab."""
  grad_fn = jax.value_and_grad(discriminator_loss, argnums=1, has_aux=True)
  (_, (batch_stats, terms)), grads = grad_fn(parts, d.params, d.batch_stats, l, real_ab,
                                             fake_ab, rng)
  d = _apply_gradients(parts.d_tx, d, grads, batch_stats)
  if parts.loss.clip > 0:
    d = d.replace(params=objectives.clip_weights(d.params, parts.loss.clip))
  terms["d_grad_norm"] = optax.tree.norm(grads)
  return d, terms


def train_discriminator(parts: StepParts, state: TrainState, l: jax.Array, real_ab: jax.Array,
                        fake_ab: jax.Array, rng: jax.Array,
                        g_input: jax.Array | None = None) -> tuple[NetState, dict[str, Any]]:
  """`n_critic` D updates inside one jitted step (a fori_loop, not a retraced Python loop).

  The first update uses the generator output of this step; later ones draw fresh samples (new
  dropout noise) from the current generator, as WGAN's critic loop does. `g_input` is the
  generator's input (L and its hints; None for L alone); D always sees (L, ab).
  """
  g_input = l if g_input is None else g_input
  d, terms = update_discriminator(parts, state.d, l, real_ab, fake_ab, rng)
  if parts.loss.n_critic == 1:
    return d, terms

  def body(i, carry):
    d, _ = carry
    sample_rng, update_rng = jax.random.split(jax.random.fold_in(rng, i))
    fake, _ = generate(parts, state.g.params, state.g.batch_stats, g_input, sample_rng)
    return update_discriminator(parts, d, l, real_ab,
                                jax.lax.stop_gradient(parts.decode(fake)), update_rng)

  return jax.lax.fori_loop(1, parts.loss.n_critic, body, (d, terms))


def ema_decay_at(decay: float, num_updates: jax.Array) -> jax.Array:
  """The averaging decay after `num_updates` updates: min(decay, (1 + t) / (10 + t)).

  A fixed decay of 0.999 leaves 0.999^600 = 55% of the *initial* weights in the average after
  600 steps (and their checkerboard, from the untrained transposed convolutions). Adam-style
  debiasing removes the initialisation but still weighs every early, poor step equally with
  the late ones. The warm-up decay of TensorFlow's `ExponentialMovingAverage(num_updates=...)`
  averages over a window that grows with the run (about t / 10 steps) until it reaches
  1 / (1 - decay): at any run length the average is of recent weights, never the initialisation.
  """
  t = jnp.asarray(num_updates, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def update_ema(decay: float, num_updates: jax.Array, ema: PyTree, variables: PyTree) -> PyTree:
  """Moves the averaged generator variables towards the current ones.

  The BatchNorm running statistics are averaged with the same decay as the weights, as
  TensorFlow's `ExponentialMovingAverage` over all model variables and timm's `ModelEmaV2` do:
  the statistics then describe the same window of training as the averaged weights. The raw
  generator's own statistics follow the raw weights over the last ~10 steps (momentum 0.9), a
  different network from the average; recomputing them with a forward pass over training data
  (Izmailov et al. 2018, SWA) would cost a pass per eval for no measured gain here.
  """
  if decay <= 0:
    return variables
  step_size = 1.0 - ema_decay_at(decay, num_updates)
  return optax.incremental_update(variables, ema, step_size)


def train_step(parts: StepParts, base_rng: jax.Array, state: TrainState,
               batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
  """Lab conversion, then n_critic D updates, then one G update, for a batch of uint8 RGB
  "image" (B, H, W, 3) and, when the config trains on classes, int "label" (B,).

  The generator runs forward once: `jax.vjp` keeps its backward pass for after D's update,
  when the G loss (against the updated D, as in pix2pix) gives the cotangent of its outputs.
  """
  rng = jax.random.fold_in(base_rng, state.step)
  g_rng, d_rng = jax.random.split(rng)
  l, true_ab = lab.uint8_to_model_inputs(batch["image"])
  g_input = training_input(parts, l, true_ab, jax.random.fold_in(rng, _HINT_STREAM))

  forward = lambda params: generate(parts, params, state.g.batch_stats, g_input, g_rng)
  g_out, g_vjp, g_batch_stats = jax.vjp(forward, state.g.params, has_aux=True)

  d, metrics = state.d, {}
  if d is not None:
    fake_ab = jax.lax.stop_gradient(parts.decode(g_out))
    d, metrics = train_discriminator(parts, state, l, true_ab, fake_ab, d_rng, g_input)

  loss_grad = jax.value_and_grad(generator_loss, argnums=1, has_aux=True)
  (_, g_terms), out_cotangent = loss_grad(parts, g_out, d, l, true_ab, batch.get("label"))
  (g_grads,) = g_vjp(out_cotangent)
  g = _apply_gradients(parts.g_tx, state.g, g_grads, g_batch_stats)
  metrics.update(g_terms, g_grad_norm=optax.tree.norm(g_grads),
                 g_param_norm=optax.tree.norm(g.params))
  new_state = TrainState(step=state.step + 1, g=g, d=d,
                         ema=update_ema(parts.ema_decay, state.step + 1, state.ema,
                                        generator_variables(g)))
  return new_state, metrics


# ------------------------------------------------------------------------------------------
# Inference: what the evaluators receive (colorjax/evals/base.py, `Predictor`).
# ------------------------------------------------------------------------------------------
def predict_ab(parts: StepParts, variables: PyTree, l: jax.Array) -> jax.Array:
  """Normalised ab from the generator with `variables` ({"params", "batch_stats"}) in
  inference mode. `l`: normalised L (B, H, W, 1), automatic even for a hint model, or a hint
  model's whole input (B, H, W, 4), `hints_lib.generator_input`."""
  return parts.decode(parts.generator.apply(variables, automatic_input(parts, l), train=False))


def eval_variables(state: TrainState) -> dict[str, PyTree]:
  """The generators the evaluators score, by name: the moving average ("averaged", what
  colorize, serve and export load) and the raw generator ("raw")."""
  return {"averaged": state.ema, "raw": generator_variables(state.g)}
