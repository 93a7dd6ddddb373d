"""A run's parts built from its config: modules, optimizers and losses (`make_step_parts`), the
state born sharded on the mesh (`create_state`, `init_state`) and the jitted train step
(`make_train_step`). The trainer, --mode=eval, the benchmarks, the tests and inference build
them here and nowhere else.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections

from colorjax import models
from colorjax.color import rebalance
from colorjax.training import classification
from colorjax.training import objectives
from colorjax.training import optim
from colorjax.training import steps

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


# ------------------------------------------------------------------------------------------
# Building blocks from config.
# ------------------------------------------------------------------------------------------
def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, with the valid choices, on values the trainer cannot use."""
  if config.dtype not in DTYPES:
    raise ValueError(f"dtype {config.dtype!r} is not one of {sorted(DTYPES)}")
  generator_cls = models.GENERATORS.get(config.model.generator)
  if config.loss.class_weight > 0 and not hasattr(generator_cls, "num_classes"):
    with_classifier = [n for n in models.GENERATORS.names()
                       if hasattr(models.GENERATORS.get(n), "num_classes")]
    raise ValueError(f"loss.class_weight > 0 needs a generator with an image-level classifier "
                     f"({', '.join(with_classifier)}); {config.model.generator!r} has none")
  uses_gan = config.loss.gan != "none"
  if uses_gan:
    objectives.OBJECTIVES.get(config.loss.gan)
    if config.model.discriminator == "none":
      raise ValueError(f"loss.gan={config.loss.gan!r} needs a discriminator; "
                       f"choose one of {models.DISCRIMINATORS.names()}")
    models.DISCRIMINATORS.get(config.model.discriminator)
  for key in ("num_train_steps", "log_every_steps", "checkpoint_every_steps",
              "eval_every_steps", "batch_size"):
    if config[key] <= 0:
      raise ValueError(f"{key} must be positive, got {config[key]}")
  if config.batch_size % jax.device_count():
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of "
                     f"devices ({jax.device_count()})")


def make_step_parts(config: ml_collections.ConfigDict,
                    prior: rebalance.Prior | None = None) -> steps.StepParts:
  """Modules, optimizers and losses from config.

  `prior` rebalances the classification loss and weights the rebalanced AuC in eval.
  """
  dtype = DTYPES[config.dtype]
  bins = classification.load_bins(config) if classification.uses_bins(config) else None
  generator = models.build_generator(config.model.generator,
                                     classification.generator_kwargs(config, bins), dtype)
  classification_loss = None
  if config.loss.ce_weight > 0:
    classification_loss = classification.make_classification_loss(
        config, bins, None if prior is None else prior.weights)
  g_schedule, d_schedule = optim.make_schedules(config)
  objective, discriminator, d_tx = None, None, None
  if config.loss.gan != "none":
    fields = {"margin": config.loss.ebgan_margin} if (
        config.loss.gan == "ebgan" and config.loss.ebgan_margin > 0) else {}
    objective = objectives.make_objective(config.loss.gan, **fields)
    discriminator = models.build_discriminator(
        config.model.discriminator, config.model.discriminator_kwargs.to_dict(), dtype)
    d_tx = optim.make_optimizer(config.optimizer, d_schedule)
  loss = steps.LossConfig(**{f: config.loss[f] for f in steps.LossConfig.__dataclass_fields__})
  return steps.StepParts(generator=generator, discriminator=discriminator, objective=objective,
                         g_tx=optim.make_optimizer(config.optimizer, g_schedule), d_tx=d_tx,
                         loss=loss, ema_decay=config.model.ema_decay,
                         decode=classification.make_decoder(config, bins),
                         classification_loss=classification_loss,
                         pixel_weights=None if prior is None else
                         classification.rebalanced_pixel_weights(prior))


def load_prior(config: ml_collections.ConfigDict, workdir: str) -> rebalance.Prior:
  """The colour prior of the training data (computed once into the workdir).

  It rebalances the cross-entropy of classification configs and, for every config, weights
  the rebalanced AuC in eval.
  """
  return classification.load_or_compute_prior(config, workdir)


def rngs(seed: int) -> tuple[jax.Array, jax.Array]:
  """(init key, base key of the step): one key per run, folded with the step inside it."""
  init_rng, step_rng = jax.random.split(jax.random.key(seed))
  return init_rng, step_rng


def shardings(mesh: jax.sharding.Mesh) -> tuple[NamedSharding, NamedSharding]:
  """(replicated, batch sharded over the `data` axis)."""
  return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def create_state(config: ml_collections.ConfigDict, parts: steps.StepParts,
                 mesh: jax.sharding.Mesh) -> tuple[Any, Any, Any]:
  """(init function, abstract state, state shardings): parameters replicated on the mesh."""
  replicated, _ = shardings(mesh)
  size = config.data.image_size
  init = functools.partial(steps.init_state, parts,
                           image_shape=(config.batch_size, size, size, 3))
  abstract = jax.eval_shape(init, rngs(config.seed)[0])
  state_shardings = jax.tree.map(lambda _: replicated, abstract)
  return init, abstract, state_shardings


def init_state(config: ml_collections.ConfigDict, parts: steps.StepParts,
               mesh: jax.sharding.Mesh) -> steps.TrainState:
  """A fresh state from the config's seed, initialised directly in its shardings."""
  init, _, state_shardings = create_state(config, parts, mesh)
  return jax.jit(init, out_shardings=state_shardings)(rngs(config.seed)[0])


def make_train_step(config: ml_collections.ConfigDict, parts: steps.StepParts,
                    mesh: jax.sharding.Mesh) -> Callable[[steps.TrainState, dict[str, jax.Array]],
                                                         tuple[steps.TrainState, dict[str, Any]]]:
  """`steps.train_step` jitted for the mesh: (state, batch) -> (state, metrics).

  The state is donated (updated in place) and replicated, the batch is sharded over the `data`
  axis, the metrics come back replicated; the step's RNG is the config seed's step key, folded
  with the step number inside.
  """
  _, _, state_shardings = create_state(config, parts, mesh)
  replicated, batch_sharding = shardings(mesh)
  return jax.jit(functools.partial(steps.train_step, parts, rngs(config.seed)[1]),
                 in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)
