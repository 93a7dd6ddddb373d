"""The generator built from its config, and nothing else: the modules and decoder that
inference, export, compare and the trainer share (`make_generator`), and its variables' shapes
(`abstract_generator_variables`).

No optimizer, loss or discriminator is imported here (optax and the train step add 0.25-0.4 s,
about 40%, to `import colorjax.inference`); the trainer's parts are built in
colorjax/training/run_setup.py.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from colorjax import models
from colorjax.color import hints
from colorjax.models import layers
from colorjax.training import classification

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
Decoder = Callable[[dict[str, jax.Array]], jax.Array]


def conv_impl(config: ml_collections.ConfigDict,
              platforms: Sequence[str] | None = None) -> str:
  """`config.model.conv` resolved for `platforms` (default: the local backend), once.

  Configs saved before the key existed (a workdir's config.json) read as "auto".
  """
  return layers.resolve_conv(config.model.get("conv", "auto"), platforms)


def config_bins(config: ml_collections.ConfigDict) -> Any:
  """The ab bins when the config's loss or decoder uses them, else None."""
  return classification.load_bins(config) if classification.uses_bins(config) else None


def make_generator(config: ml_collections.ConfigDict, conv: str | None = None,
                   bins: Any = None) -> tuple[nn.Module, Decoder]:
  """(generator, decoder: generator outputs -> normalised ab) from config, and nothing else.

  No optimizer, loss or discriminator is built: inference uses this alone. `conv` is the
  convolution implementation (`layers.CONV_CHOICES`); None for `config.model.conv` on the
  local backend. `bins`: the ab bins when the caller has them already.
  """
  bins = config_bins(config) if bins is None else bins
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
