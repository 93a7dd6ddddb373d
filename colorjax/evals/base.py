"""What an evaluator is made of: the `Evaluator` base class and its registry, the `Predictor`
(the generator as a function) and the context the evaluators of one run share, and the sharded
eval batches they read.

As in big_vision (Beyer et al. 2022), an evaluator receives what it evaluates as functions and
the variables to evaluate, never the trainer's state or parts: the trainer (colorjax/train.py)
hands it `Predictor.predict(variables, l) -> ab` and, at each run, the named generators'
variables ({"averaged": ..., "raw": ...}). So a new evaluator type is written without reading
the trainer, and nothing under colorjax/evals/ imports colorjax/training/.

An evaluator type registers itself with `@EVALUATORS.register("<type>")` and is built by
colorjax/evals/common.py from an entry of `config.evals`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Callable, Iterator, Mapping

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from colorjax.color import lab
from colorjax.core import distributed
from colorjax.core import registry
from colorjax.data import pipeline

Batches = Iterator[tuple[jax.Array, jax.Array]]
PyTree = Any
# The variables of each generator to score, by name: "averaged" (the moving average, what
# colorize, serve and export load) and "raw" (the generator as trained).
Variables = Mapping[str, PyTree]


@dataclasses.dataclass(frozen=True)
class Predictor:
  """The generator as the evaluators see it: a pure function and what it needs.

  `predict(variables, l)` -> normalised ab (B, H, W, 2), in inference mode, traceable under
  jit. `l` is normalised L (B, H, W, 1), or L with hint channels (B, H, W, 4) when
  `takes_hints` (`colorjax.color.hints.generator_input`; L alone means no hints).
  `pixel_weights(true_ab)` -> per-pixel weights of the colour prior (the rebalanced AuC), or
  None without a prior.
  """
  predict: Callable[[PyTree, jax.Array], jax.Array]
  takes_hints: bool = False
  pixel_weights: Callable[[jax.Array], jax.Array] | None = None

  def rgb(self, variables: PyTree, images: jax.Array) -> jax.Array:
    """The colorization of uint8 RGB `images` from their L, as RGB in [0, 1]."""
    l, _ = lab.uint8_to_model_inputs(images)
    return lab.model_outputs_to_rgb(l, self.predict(variables, l))


class EvalContext:
  """What the evaluators of one run share: the config, the predictor, the mesh, the workdir
  and the eval split."""

  def __init__(self, config: ml_collections.ConfigDict, predictor: Predictor,
               mesh: jax.sharding.Mesh, workdir: str):
    self.config, self.predictor, self.mesh, self.workdir = config, predictor, mesh, workdir

  def batches(self) -> tuple[Batches, int]:
    """A new pass over the eval split: `eval_batches` on this run's config and mesh."""
    return eval_batches(self.config, self.mesh)


class Evaluator(abc.ABC):
  """One kind of evaluation: `run(variables, step)` yields (key, value) pairs.

  Values are floats (scalar metrics) or uint8 (H, W, 3) images. A subclass registers itself
  with `@EVALUATORS.register("<type>")` and builds its jitted steps in `__init__`.
  """

  # The top-level config key an `every` of 0 stands for.
  default_every_key = "eval_every_steps"

  def __init__(self, context: EvalContext, options: ml_collections.ConfigDict):
    self.context, self.options = context, options
    self.config, self.mesh, self.workdir = context.config, context.mesh, context.workdir
    self.every = resolve_every(context.config, options, type(self))
    self.num_images = 0  # Real eval images the last run scored (the eval JSON's num_images).

  @classmethod
  def check_options(cls, name: str, options: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming `evals.<name>.<option>` for an option that cannot work."""

  @classmethod
  def enabled(cls, options: ml_collections.ConfigDict) -> bool:
    """False skips the entry (FID without weights)."""
    del options
    return True

  @abc.abstractmethod
  def run(self, variables: Variables, step: int) -> Iterator[tuple[str, Any]]:
    """Scores the generators' `variables` (`Variables`), yielding (key, value) pairs."""


EVALUATORS: registry.Registry[type[Evaluator]] = registry.Registry("evaluator type")


def resolve_every(config: ml_collections.ConfigDict, options: ml_collections.ConfigDict,
                  cls: type[Evaluator]) -> int:
  """An entry's cadence in steps: its `every`, or the top-level key that 0 stands for."""
  every = options.get("every", 0)
  return every if every else config[cls.default_every_key]


# ------------------------------------------------------------------------------------------
# Eval data.
# ------------------------------------------------------------------------------------------
def eval_batches(config: ml_collections.ConfigDict,
                 mesh: jax.sharding.Mesh) -> tuple[Batches, int]:
  """(global (images, mask) batches sharded over `data`, number of images in the split).

  Each process reads its own share; every process yields the same number of batches (short
  ones padded, `mask` marking the real rows), so the jitted steps run in lockstep.
  """
  _, sharding = distributed.shardings(mesh)
  dataset, num_images = pipeline.create_eval_dataset(config)
  local_size = pipeline.local_batch_size(config.eval.batch_size, "eval.batch_size")
  per_process = math.ceil(num_images / jax.process_count())
  num_batches = math.ceil(per_process / local_size)
  size = config.data.image_size
  empty = {"image": np.zeros((0, size, size, 3), np.uint8)}

  def batches():
    local = iter(dataset)
    for _ in range(num_batches):
      images, mask = pipeline.pad_batch(next(local, empty)["image"], local_size)
      yield (pipeline.to_global_batch(images, sharding),
             pipeline.to_global_batch(mask, sharding))
  return batches(), num_images


def replicated(x: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
  """A host array that every process holds alike, as a global array replicated over `mesh`."""
  sharding, _ = distributed.shardings(mesh)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def host_mask(mask: jax.Array) -> np.ndarray:
  """The whole (global) mask of a batch on every host: one bool per row, never images."""
  return np.asarray(multihost_utils.process_allgather(mask, tiled=True))
