"""A run's parts built from its config: modules, optimizers and losses (`make_step_parts`), the
state born sharded on the mesh (`create_state`, `init_state`) and the jitted train step
(`make_train_step`). The trainer, --mode=eval, the benchmarks, the tests and inference build
them here and nowhere else.

Inference needs the generator alone (`make_generator`, `abstract_generator_variables`): the
optimizer and train-step modules (optax) are imported by the functions that build the
trainer's parts, so that `colorjax.inference` loads none of them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Sequence

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections

from colorjax import models
from colorjax.color import hints
from colorjax.models import layers
from colorjax.training import classification

if TYPE_CHECKING:
  from colorjax.color import rebalance
  from colorjax.training import steps

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
Decoder = Callable[[dict[str, jax.Array]], jax.Array]


# ------------------------------------------------------------------------------------------
# Building blocks from config.
# ------------------------------------------------------------------------------------------
def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, with the valid choices, on values the trainer cannot use."""
  from colorjax.training import objectives  # pylint: disable=g-import-not-at-top
  if config.dtype not in DTYPES:
    raise ValueError(f"dtype {config.dtype!r} is not one of {sorted(DTYPES)}")
  conv_impl(config)  # An unknown model.conv fails here, naming the choices.
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


def conv_impl(config: ml_collections.ConfigDict,
              platforms: Sequence[str] | None = None) -> str:
  """`config.model.conv` resolved for `platforms` (default: the local backend), once.

  Configs saved before the key existed (a workdir's config.json) read as "auto".
  """
  return layers.resolve_conv(config.model.get("conv", "auto"), platforms)


def _bins(config: ml_collections.ConfigDict) -> Any:
  return classification.load_bins(config) if classification.uses_bins(config) else None


def make_generator(config: ml_collections.ConfigDict, conv: str | None = None,
                   bins: Any = None) -> tuple[nn.Module, Decoder]:
  """(generator, decoder: generator outputs -> normalised ab) from config, and nothing else.

  No optimizer, loss or discriminator is built: inference uses this alone. `conv` is the
  convolution implementation (`layers.CONV_CHOICES`); None for `config.model.conv` on the
  local backend. `bins`: the ab bins when the caller has them already.
  """
  bins = _bins(config) if bins is None else bins
  impl = conv_impl(config) if conv is None else layers.resolve_conv(conv)
  generator = models.build_generator(config.model.generator,
                                     classification.generator_kwargs(config, bins),
                                     DTYPES[config.dtype], conv=impl)
  return generator, classification.make_decoder(config, bins)


def abstract_generator_variables(config: ml_collections.ConfigDict,
                                 generator: nn.Module) -> dict[str, Any]:
  """The generator's {"params", "batch_stats"} as ShapeDtypeStructs (nothing is computed).

  The shapes are those `steps.init_state` gives the generator (and its moving average) for
  the config's image size; they do not depend on the batch size, so one image stands in.
  """
  size = config.data.image_size
  l = jax.ShapeDtypeStruct((1, size, size, hints.input_channels(config)), jnp.float32)
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(functools.partial(generator.init, train=False), rngs, l)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def make_step_parts(config: ml_collections.ConfigDict,
                    prior: rebalance.Prior | None = None) -> steps.StepParts:
  """Modules, optimizers and losses from config.

  `prior` rebalances the classification loss and weights the rebalanced AuC in eval. The
  convolution implementation (`config.model.conv`) is resolved here, once, for both models.
  """
  # The trainer's parts (optax) load here, not with the module: inference never needs them.
  from colorjax.training import objectives, optim, steps  # pylint: disable=g-import-not-at-top
  dtype = DTYPES[config.dtype]
  conv = conv_impl(config)
  bins = _bins(config)
  generator, decode = make_generator(config, conv, bins)
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
        config.model.discriminator, config.model.discriminator_kwargs.to_dict(), dtype, conv)
    d_tx = optim.make_optimizer(config.optimizer, d_schedule)
  loss = steps.LossConfig(**{f: config.loss[f] for f in steps.LossConfig.__dataclass_fields__})
  return steps.StepParts(generator=generator, discriminator=discriminator, objective=objective,
                         g_tx=optim.make_optimizer(config.optimizer, g_schedule), d_tx=d_tx,
                         loss=loss, ema_decay=config.model.ema_decay,
                         decode=decode,
                         classification_loss=classification_loss,
                         pixel_weights=None if prior is None else
                         classification.rebalanced_pixel_weights(prior),
                         hints=hints.from_config(config))


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
  from colorjax.training import steps  # pylint: disable=g-import-not-at-top
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
  from colorjax.training import steps  # pylint: disable=g-import-not-at-top
  _, _, state_shardings = create_state(config, parts, mesh)
  replicated, batch_sharding = shardings(mesh)
  return jax.jit(functools.partial(steps.train_step, parts, rngs(config.seed)[1]),
                 in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)
