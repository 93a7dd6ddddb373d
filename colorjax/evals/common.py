"""Evaluators chosen by name from `config.evals`, each on its own cadence.

As in big_vision's `config.evals` (Beyer et al. 2022, github.com/google-research/big_vision),
every entry names a registered evaluator type, how often it runs and its options:

  config.evals.<name> = dict(type=<type>, every=<steps>, **options)

`every` is in training steps; 0 stands for the top-level `eval_every_steps`
(`sample_every_steps` for the "samples" type), so the config variants and an override of those
keys set the cadence of every evaluator that does not set its own. Every evaluator also runs at
the last step; a run stopping on SIGTERM runs none (its grace period is for the checkpoint).

`build(config, parts, mesh, workdir)` makes each evaluator once per run, and each builds its
jitted steps in its constructor. They share one jitted `steps.eval_step` (`EvalContext`): the
generators compile once per run, not once per evaluator. `run(evaluators, state, step, ...)`
runs them and writes what they yield: scalars as TensorBoard `eval/<key>` and, when there are
any, as `<workdir>/eval/step_XXXXXXXX.json` and `latest.json`; images (H, W, 3) under their own
key.

Types (their modules register them): "colorization" (colorjax/evals/colorization.py),
"samples" (colorjax/evals/samples.py), "fid" (colorjax/evals/fid.py).
"""

from __future__ import annotations

import abc
import functools
import math
import os
from typing import Any, Callable, Iterator, Sequence

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from colorjax.core import files
from colorjax.core import registry
from colorjax.core import summaries
from colorjax.data import pipeline
from colorjax.training import builders
from colorjax.training import steps

Batches = Iterator[tuple[jax.Array, jax.Array]]


class EvalContext:
  """What the evaluators of one run share: the config, the step parts, the mesh, the workdir,
  and the jitted eval step (built on first use, once per run)."""

  def __init__(self, config: ml_collections.ConfigDict, parts: steps.StepParts,
               mesh: jax.sharding.Mesh, workdir: str):
    self.config, self.parts, self.mesh, self.workdir = config, parts, mesh, workdir

  @functools.cached_property
  def eval_step(self) -> Callable[[steps.TrainState, jax.Array],
                                  tuple[dict[str, jax.Array], jax.Array, jax.Array]]:
    """`steps.eval_step` jitted for the mesh: (state, uint8 batch) -> (per-image metrics, the
    averaged generator's RGB, the raw generator's RGB), all sharded like the batch."""
    _, batch = builders.shardings(self.mesh)
    return jax.jit(functools.partial(steps.eval_step, self.parts), out_shardings=(batch,) * 3)

  def batches(self) -> tuple[Batches, int]:
    """A new pass over the eval split: `eval_batches` on this run's config and mesh."""
    return eval_batches(self.config, self.mesh)


class Evaluator(abc.ABC):
  """One kind of evaluation: `run(state, step)` yields (key, value) pairs.

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
  def run(self, state: steps.TrainState, step: int) -> Iterator[tuple[str, Any]]:
    """Scores `state`, yielding (key, value) pairs."""


EVALUATORS: registry.Registry[type[Evaluator]] = registry.Registry("evaluator type")


def _register_builtin() -> None:
  # Imported here, not at the top: these modules import this one for the registry.
  # pylint: disable-next=g-import-not-at-top,unused-import
  from colorjax.evals import colorization, fid, samples  # noqa: F401


def resolve_every(config: ml_collections.ConfigDict, options: ml_collections.ConfigDict,
                  cls: type[Evaluator]) -> int:
  """An entry's cadence in steps: its `every`, or the top-level key that 0 stands for."""
  every = options.get("every", 0)
  return every if every else config[cls.default_every_key]


def check_config(config: ml_collections.ConfigDict
                 ) -> list[tuple[str, type[Evaluator], ml_collections.ConfigDict]]:
  """(name, class, options) of every enabled entry of `config.evals`, without building models.

  Raises ValueError naming the entry: an unknown type (listing the valid ones), a cadence that
  is not a positive step count, an option its type rejects (FID weights that do not exist).
  """
  _register_builtin()
  entries = []
  for name, options in config.evals.items():
    if not isinstance(options, ml_collections.ConfigDict) or "type" not in options:
      raise ValueError(f"evals.{name} must be a dict with a 'type' (one of "
                       f"{', '.join(EVALUATORS.names())}), e.g. dict(type='colorization', "
                       f"every=1000)")
    try:
      cls = EVALUATORS.get(options.type)
    except ValueError as e:
      raise ValueError(f"evals.{name}.type: {e}") from None
    every = resolve_every(config, options, cls)
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
      source = (f"evals.{name}.every" if options.get("every", 0) else
                f"{cls.default_every_key} (evals.{name}.every=0 stands for it)")
      raise ValueError(f"{source} must be a positive number of steps, got {every!r}")
    cls.check_options(name, options)
    if cls.enabled(options):
      entries.append((name, cls, options))
  return entries


def build(config: ml_collections.ConfigDict, parts: steps.StepParts, mesh: jax.sharding.Mesh,
          workdir: str) -> list[Evaluator]:
  """One evaluator per enabled entry of `config.evals`, built once per run."""
  context = EvalContext(config, parts, mesh, workdir)
  return [cls(context, options) for _, cls, options in check_config(config)]


def due(evaluators: Sequence[Evaluator], step: int, last: bool) -> list[Evaluator]:
  """Those to run after `step`: on their cadence, and all of them at the last step."""
  return [e for e in evaluators if last or step % e.every == 0]


# ------------------------------------------------------------------------------------------
# Eval data.
# ------------------------------------------------------------------------------------------
def eval_batches(config: ml_collections.ConfigDict,
                 mesh: jax.sharding.Mesh) -> tuple[Batches, int]:
  """(global (images, mask) batches sharded over `data`, number of images in the split).

  Each process reads its own share; every process yields the same number of batches (short
  ones padded, `mask` marking the real rows), so the jitted steps run in lockstep.
  """
  _, sharding = builders.shardings(mesh)
  dataset, num_images = pipeline.create_eval_dataset(config)
  local_size = pipeline.local_batch_size(config.eval.batch_size)
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
  sharding, _ = builders.shardings(mesh)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def host_mask(mask: jax.Array) -> np.ndarray:
  """The whole (global) mask of a batch on every host: one bool per row, never images."""
  return np.asarray(multihost_utils.process_allgather(mask, tiled=True))


# ------------------------------------------------------------------------------------------
# Running and writing.
# ------------------------------------------------------------------------------------------
def run(evaluators: Sequence[Evaluator], state: steps.TrainState, step: int, *,
        config: ml_collections.ConfigDict, workdir: str,
        writer: summaries.MetricWriter) -> dict[str, float]:
  """Runs `evaluators` on `state`; writes their scalars (TensorBoard `eval/<key>`, the eval
  JSON) and images; returns the scalars."""
  scalars, images, counts = {}, {}, []
  for evaluator in evaluators:
    produced_scalars = False
    for key, value in evaluator.run(state, step):
      if key in scalars or key in images:
        raise ValueError(f"two evaluators yield {key!r}; give one of them other keys")
      if np.ndim(value) == 0:
        scalars[key] = float(value)
        produced_scalars = True
      else:
        images[key] = np.asarray(value)
    if produced_scalars:
      counts.append(evaluator.num_images)
  if images and jax.process_index() == 0:
    writer.write_images(step, {key: image[None] for key, image in images.items()})
  if not scalars:
    return {}
  scalars = dict(sorted(scalars.items()))
  writer.write_scalars(step, {f"eval/{k}": v for k, v in scalars.items()})
  count = max(counts)
  if jax.process_index() == 0:
    write_eval_json(workdir, step, count, config, scalars)
  logging.info("eval at step %d over %d images: %s", step, count,
               ", ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
  return scalars


def write_eval_json(workdir: str, step: int, count: int, config: ml_collections.ConfigDict,
                    results: dict[str, float]) -> None:
  """`<workdir>/eval/step_XXXXXXXX.json` and `latest.json`: the averaged generator's scores
  (`model`), the raw generator's (`raw_generator`, keys `raw_*`) and the gray baseline's
  (`gray_baseline`, keys `gray_*`)."""
  def section(prefix):
    return {k[len(prefix):]: v for k, v in results.items() if k.startswith(prefix)}
  model = {k: v for k, v in results.items() if not k.startswith(("gray_", "raw_"))}
  # "model" is the averaged generator every consumer (colorize, serve, export) loads; the raw
  # generator is reported beside it so that a poor average shows.
  record = {"step": step, "num_images": count, "dataset": config.data.name,
            "image_size": config.data.image_size, "ema_decay": config.model.ema_decay,
            "model": model, "raw_generator": section("raw_"), "gray_baseline": section("gray_")}
  for name in (f"step_{step:08d}.json", "latest.json"):
    files.write_json(os.path.join(workdir, "eval", name), record)
