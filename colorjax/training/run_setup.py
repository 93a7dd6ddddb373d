"""A run's setup, built once from its config: the config validated, the mesh, the step's parts
(modules, optimizers, losses: `make_step_parts`) and the train state's shapes and shardings
(`abstract_state`), in one `RunSetup` that preflight, the trainer, --mode=eval, the benchmarks
and the tests share; it makes the state born sharded (`init_state`) and the jitted train step
(`train_step`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
from jax.sharding import NamedSharding
import ml_collections

from colorjax import models
from colorjax.color import hints
from colorjax.color import rebalance
from colorjax.core import distributed
from colorjax.training import builders
from colorjax.training import classification
from colorjax.training import objectives
from colorjax.training import optim
from colorjax.training import prior as prior_lib
from colorjax.training import steps


# ------------------------------------------------------------------------------------------
# Building blocks from config.
# ------------------------------------------------------------------------------------------
def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, with the valid choices, on values the trainer cannot use."""
  if config.dtype not in builders.DTYPES:
    raise ValueError(f"dtype {config.dtype!r} is not one of {sorted(builders.DTYPES)}")
  builders.conv_impl(config)  # An unknown model.conv fails here, naming the choices.
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
  distributed.check_batch_divides("batch_size", config.batch_size)
  distributed.check_batch_divides("eval.batch_size", config.eval.batch_size)


def make_step_parts(config: ml_collections.ConfigDict,
                    prior: rebalance.Prior | None = None) -> steps.StepParts:
  """Modules, optimizers and losses from config.

  `prior` rebalances the classification loss and weights the rebalanced AuC in eval. The
  convolution implementation (`config.model.conv`) is resolved here, once, for both models.
  """
  dtype = builders.DTYPES[config.dtype]
  conv = builders.conv_impl(config)
  bins = builders.config_bins(config)
  generator, decode = builders.make_generator(config, conv, bins)
  g_schedule, d_schedule = optim.make_schedules(config)
  objective, discriminator, d_tx = None, None, None
  if config.loss.gan != "none":
    fields = {"margin": config.loss.ebgan_margin} if (
        config.loss.gan == "ebgan" and config.loss.ebgan_margin > 0) else {}
    objective = objectives.make_objective(config.loss.gan, **fields)
    discriminator = models.build_discriminator(
        config.model.discriminator, config.model.discriminator_kwargs.to_dict(), dtype, conv)
    d_tx = optim.make_optimizer(config.optimizer, d_schedule)
  loss = steps.LossConfig(**{f: config.loss[f] for f in steps.LossConfig.__dataclass_fields__})
  return steps.StepParts(generator=generator, discriminator=discriminator, objective=objective,
                         g_tx=optim.make_optimizer(config.optimizer, g_schedule), d_tx=d_tx,
                         loss=loss, ema_decay=config.model.ema_decay,
                         decode=decode, hints=hints.from_config(config),
                         **_prior_parts(config, bins, prior))


def _prior_parts(config: ml_collections.ConfigDict, bins: Any,
                 prior: rebalance.Prior | None) -> dict[str, Any]:
  """The step parts the colour prior weights: the classification loss (rebalanced with it)
  and the eval's per-pixel weights (rebalanced AuC); unweighted without a prior."""
  classification_loss = None
  if config.loss.ce_weight > 0:
    classification_loss = classification.make_classification_loss(
        config, bins, None if prior is None else prior.weights)
  return {"classification_loss": classification_loss,
          "pixel_weights": None if prior is None else
                           classification.rebalanced_pixel_weights(prior)}


def load_prior(config: ml_collections.ConfigDict, workdir: str) -> rebalance.Prior:
  """The colour prior of the training data (computed once into the workdir).

  It rebalances the cross-entropy of classification configs and, for every config, weights
  the rebalanced AuC in eval.
  """
  return prior_lib.load_or_compute_prior(config, workdir)


def rngs(seed: int) -> tuple[jax.Array, jax.Array]:
  """(init key, base key of the step): one key per run, folded with the step inside it."""
  init_rng, step_rng = jax.random.split(jax.random.key(seed))
  return init_rng, step_rng


def _init_fn(config: ml_collections.ConfigDict,
             parts: steps.StepParts) -> Callable[[jax.Array], steps.TrainState]:
  """rng -> a fresh state for the config's batches (`steps.init_state`)."""
  size = config.data.image_size
  return functools.partial(steps.init_state, parts,
                           image_shape=(config.batch_size, size, size, 3))


def abstract_state(config: ml_collections.ConfigDict, parts: steps.StepParts) -> Any:
  """The train state as ShapeDtypeStructs: `steps.init_state` traced once by `jax.eval_shape`,
  nothing computed. The model's own shape checks (a U-Net's sides divisible by 2**num_downs)
  raise here."""
  return jax.eval_shape(_init_fn(config, parts), rngs(config.seed)[0])


# ------------------------------------------------------------------------------------------
# The run's setup: built once, shared by preflight, the trainer, --mode=eval, the benchmarks
# and the tests.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunSetup:
  """A run's config (validated), mesh, step parts and abstract state, each built once.

  `RunSetup.create(config)` validates the config and traces the state's shapes a single time;
  preflight checks the model and the disk on it, and the trainer and --mode=eval take it over,
  adding the colour prior (`with_prior`) once the workdir holds it.
  """
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  parts: steps.StepParts
  abstract_state: Any  # steps.TrainState of ShapeDtypeStructs.
  state_shardings: Any  # Parameters replicated on the mesh.

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
             prior: rebalance.Prior | None = None) -> RunSetup:
    """Validates `config` and builds the parts and the abstract state; `mesh` defaults to
    every device on one `data` axis. ValueError (KeyError from a registry) names the key to
    change and the valid choices."""
    validate_config(config)
    mesh = distributed.make_data_mesh() if mesh is None else mesh
    parts = make_step_parts(config, prior)
    try:
      abstract = abstract_state(config, parts)
    except ValueError as e:  # The model's own shape checks: say which key to change.
      raise ValueError(f"the model cannot be built for data.image_size="
                       f"{config.data.image_size}: {e}") from e
    replicated, _ = distributed.shardings(mesh)
    return cls(config=config, mesh=mesh, parts=parts, abstract_state=abstract,
               state_shardings=jax.tree.map(lambda _: replicated, abstract))

  def with_prior(self, prior: rebalance.Prior) -> RunSetup:
    """The same setup with the colour prior's weights in the losses and eval; the state's
    shapes do not depend on it, so nothing is traced again."""
    return dataclasses.replace(self, parts=dataclasses.replace(
        self.parts, **_prior_parts(self.config, builders.config_bins(self.config), prior)))

  @property
  def batch_sharding(self) -> NamedSharding:
    """Batches are sharded over the mesh's `data` axis."""
    return distributed.shardings(self.mesh)[1]

  def init_state(self) -> steps.TrainState:
    """A fresh state from the config's seed, initialised directly in its shardings."""
    return jax.jit(_init_fn(self.config, self.parts),
                   out_shardings=self.state_shardings)(rngs(self.config.seed)[0])

  def train_step(self) -> Callable[[steps.TrainState, dict[str, jax.Array]],
                                   tuple[steps.TrainState, dict[str, Any]]]:
    """`steps.train_step` jitted for the mesh: (state, batch) -> (state, metrics).

    The state is donated (updated in place) and replicated, the batch is sharded over the
    `data` axis, the metrics come back replicated; the step's RNG is the config seed's step
    key, folded with the step number inside.
    """
    replicated, batch_sharding = distributed.shardings(self.mesh)
    return jax.jit(functools.partial(steps.train_step, self.parts, rngs(self.config.seed)[1]),
                   in_shardings=(self.state_shardings, batch_sharding),
                   out_shardings=(self.state_shardings, replicated), donate_argnums=0)
