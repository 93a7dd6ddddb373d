"""Evaluators chosen by name from `config.evals`, each on its own cadence.

As in big_vision's `config.evals` (Beyer et al. 2022, github.com/google-research/big_vision),
every entry names a registered evaluator type, how often it runs and its options:

  config.evals.<name> = dict(type=<type>, every=<steps>, **options)

`every` is in training steps; 0 stands for the top-level `eval_every_steps`
(`sample_every_steps` for the "samples" type), so the config variants and an override of those
keys set the cadence of every evaluator that does not set its own. Every evaluator also runs at
the last step; a run stopping on SIGTERM runs none (its grace period is for the checkpoint).

`build(config, predictor, mesh, workdir)` makes each evaluator once per run, and each builds
its jitted steps in its constructor on the `base.Predictor` (the generator as a function), each
computing only what it reports: the metrics pass runs both generators over the split, the
sample grid runs them on its `num_samples` images alone, FID runs the averaged one.
`run(evaluators, variables, step, ...)` scores the generators' variables ({"averaged": ...,
"raw": ...}) and writes what they yield:
scalars as TensorBoard `eval/<key>` and, when there are any, as
`<workdir>/eval/step_{step:08d}.json` and `latest.json`; images (H, W, 3) under their own key.

Types (their modules register them): "colorization" (colorjax/evals/colorization.py),
"samples" (colorjax/evals/samples.py), "fid" (colorjax/evals/fid.py), "hints" (metrics by
number of hints, colorjax/evals/hints.py).
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from colorjax.core import files
from colorjax.core import summaries
from colorjax.evals import base

# Importing the evaluator modules registers their types in `base.EVALUATORS`.
from colorjax.evals import colorization, fid, hints, samples  # noqa: E402,F401

def check_config(config: ml_collections.ConfigDict
                 ) -> list[tuple[str, type[base.Evaluator], ml_collections.ConfigDict]]:
  """(name, class, options) of every enabled entry of `config.evals`, without building models.

  Raises ValueError naming the entry: an unknown type (listing the valid ones), a cadence that
  is not a positive step count, an option its type rejects (FID weights that do not exist).
  """
  entries = []
  for name, options in config.evals.items():
    if not isinstance(options, ml_collections.ConfigDict) or "type" not in options:
      raise ValueError(f"evals.{name} must be a dict with a 'type' (one of "
                       f"{', '.join(base.EVALUATORS.names())}), e.g. dict(type='colorization', "
                       f"every=1000)")
    try:
      cls = base.EVALUATORS.get(options.type)
    except ValueError as e:
      raise ValueError(f"evals.{name}.type: {e}") from None
    every = base.resolve_every(config, options, cls)
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
      source = (f"evals.{name}.every" if options.get("every", 0) else
                f"{cls.default_every_key} (evals.{name}.every=0 stands for it)")
      raise ValueError(f"{source} must be a positive number of steps, got {every!r}")
    cls.check_options(name, options)
    if cls.enabled(options):
      entries.append((name, cls, options))
  return entries


def build(config: ml_collections.ConfigDict, predictor: base.Predictor,
          mesh: jax.sharding.Mesh, workdir: str) -> list[base.Evaluator]:
  """One evaluator per enabled entry of `config.evals`, built once per run."""
  context = base.EvalContext(config, predictor, mesh, workdir)
  return [cls(context, options) for _, cls, options in check_config(config)]


def due(evaluators: Sequence[base.Evaluator], step: int, last: bool) -> list[base.Evaluator]:
  """Those to run after `step`: on their cadence, and all of them at the last step."""
  return [e for e in evaluators if last or step % e.every == 0]


# ------------------------------------------------------------------------------------------
# Running and writing.
# ------------------------------------------------------------------------------------------
def run(evaluators: Sequence[base.Evaluator], variables: base.Variables, step: int, *,
        config: ml_collections.ConfigDict, workdir: str,
        writer: summaries.MetricWriter) -> dict[str, float]:
  """Runs `evaluators` on the generators' `variables`; writes their scalars (TensorBoard
  `eval/<key>`, the eval JSON) and images; returns the scalars."""
  scalars, images, counts = {}, {}, []
  for evaluator in evaluators:
    produced_scalars = False
    for key, value in evaluator.run(variables, step):
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
  """`<workdir>/eval/step_{step:08d}.json` and `latest.json`: the averaged generator's scores
  (`model`), the raw generator's (`raw_generator`, keys `raw_*`), the gray baseline's
  (`gray_baseline`, keys `gray_*`) and, for a hint model, the averaged generator's by number of
  hints (`by_hint_count`: {"10": {"psnr": ...}}, keys `hints_010/*`)."""
  def section(prefix):
    return {k[len(prefix):]: v for k, v in results.items() if k.startswith(prefix)}
  model = {k: v for k, v in results.items()
           if not k.startswith(("gray_", "raw_", hints.KEY_PREFIX))}
  # "model" is the averaged generator every consumer (colorize, serve, export) loads; the raw
  # generator is reported beside it so that a poor average shows.
  record = {"step": step, "num_images": count, "dataset": config.data.name,
            "image_size": config.data.image_size, "ema_decay": config.model.ema_decay,
            "model": model, "raw_generator": section("raw_"), "gray_baseline": section("gray_")}
  by_count = {}
  for key, value in section(hints.KEY_PREFIX).items():
    count, metric = key.split("/", 1)
    by_count.setdefault(str(int(count)), {})[metric] = value
  if by_count:
    record["by_hint_count"] = by_count
  for name in (f"step_{step:08d}.json", "latest.json"):
    files.write_json(os.path.join(workdir, "eval", name), record)
