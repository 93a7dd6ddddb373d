"""The "hints" evaluator: the averaged generator's metrics by number of hints revealed.

As Zhang et al. 2017 do (their PSNR-vs-points sweep, `test_sweep.py`), every eval image gets
0, 1, 2, 5, 10, 20, 50 and 100 hints taken from its own truth (`hints.simulate_count`:
positions normal around the centre, each hint the mean ab of its patch) at a fixed seed, so
every run and every step sees the same hints; PSNR, SSIM, colourfulness, ab error and AuC are
averaged per count.

  config.evals.hints = dict(type="hints", every=0, counts=(0, 1, 2, 5, 10, 20, 50, 100),
                            seed=0, patch_size=3)

`patch_size` is the side of each revealed patch in render pixels: by default 3, the square a
user hint covers (`hints.USER_PATCH_SIZE`), so the numbers are what hints given through the
interface do; 0 scales the paper's sweep (6 px at 256 px) to the render size (1 px
at 32 px, 3 px at 128 px), hints carrying the paper's share of the image. Keys: `hints_010/psnr`
(TensorBoard `eval/hints_010/psnr`); the eval JSON groups them by count under `by_hint_count`.
Only a model trained with hints (`config.model.hints`) is scored; the entry is skipped
otherwise.
"""

from __future__ import annotations

import math
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections

from colorjax.color import hints as hints_lib
from colorjax.color import lab
from colorjax.core import distributed
from colorjax.evals import base
from colorjax.evals import colorization
from colorjax.evals import metrics as metrics_lib

KEY_PREFIX = "hints_"
_PAPER_PATCH, _PAPER_SIZE = 6, 256  # Zhang et al. 2017's sweep: 6 px patches at 256 px.


def count_key(count: int) -> str:
  return f"{KEY_PREFIX}{count:03d}"


def eval_patch_size(patch_size: int, image_size: int) -> int:
  """The patch side used: `patch_size`, or for 0 the paper's 6/256 of the side (>= 1 px)."""
  return patch_size or max(1, round(_PAPER_PATCH * image_size / _PAPER_SIZE))


def revealed_hints(seed: int, batch_index: int | jax.Array, true_ab: jax.Array,
                   count: int | jax.Array, patch_size: int,
                   capacity: int | None = None) -> tuple[jax.Array, jax.Array]:
  """`count` hints per image of eval batch `batch_index`, the same at every step and run
  (`capacity`: a static bound on a traced `count`)."""
  rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), batch_index), count)
  cfg = hints_lib.HintConfig(min_patch=patch_size, max_patch=patch_size)
  return hints_lib.simulate_count(rng, true_ab, count, cfg, capacity)


def metrics_with_hints(predictor: base.Predictor, variables: base.PyTree, rgb: jax.Array,
                       batch_index: jax.Array, count: jax.Array, *, capacity: int, seed: int,
                       patch_size: int) -> dict[str, jax.Array]:
  """Per-image metrics (B,) of the averaged generator with `count` revealed hints (traced: one
  compilation serves every count up to `capacity`)."""
  l, true_ab = lab.uint8_to_model_inputs(rgb)
  hint_ab, mask = revealed_hints(seed, batch_index, true_ab, count, patch_size, capacity)
  pred = predictor.predict(variables, hints_lib.generator_input(l, hint_ab, mask))
  scores = metrics_lib.image_metrics(l, pred, true_ab, pixel_weights=predictor.pixel_weights)
  return {k: v for k, v in scores.items() if not k.startswith(("gray_", "true_"))}


@base.EVALUATORS.register("hints")
class HintMetrics(base.Evaluator):
  """Means over the eval split of the averaged generator's metrics for each hint count."""

  @classmethod
  def check_options(cls, name: str, options: ml_collections.ConfigDict) -> None:
    counts = options.get("counts", ())
    if not counts or any(not isinstance(c, int) or c < 0 for c in counts):
      raise ValueError(f"evals.{name}.counts must be hint counts >= 0, e.g. (0, 1, 10); "
                       f"got {counts!r}")
    if options.get("patch_size", 0) < 0:
      raise ValueError(f"evals.{name}.patch_size must be >= 0 (0: the paper's, scaled)")

  def __init__(self, context: base.EvalContext, options: ml_collections.ConfigDict):
    super().__init__(context, options)
    replicated, batch = distributed.shardings(context.mesh)
    self.counts = tuple(sorted(set(options.counts)))
    self.patch_size = eval_patch_size(options.get("patch_size", hints_lib.USER_PATCH_SIZE),
                                      context.config.data.image_size)
    score = lambda variables, rgb, index, count: metrics_with_hints(
        context.predictor, variables, rgb, index, count, capacity=max(self.counts),
        seed=options.get("seed", 0), patch_size=self.patch_size)
    self._metrics = jax.jit(score, out_shardings=batch)
    self._sums = jax.jit(colorization.masked_sums, out_shardings=replicated)

  def run(self, variables: base.Variables, step: int) -> Iterator[tuple[str, float]]:
    del step
    if not self.context.predictor.takes_hints:
      return  # A model without hint inputs: nothing to score.
    batches, _ = self.context.batches()
    # Dispatched batch after batch and count after count, read once at the end.
    per_batch = jax.device_get([
        [self._sums(self._metrics(variables["averaged"], images, jnp.int32(i),
                                  jnp.int32(count)), mask)
         for count in self.counts] for i, (images, mask) in enumerate(batches)])
    self.num_images = sum(int(by_count[0][1]) for by_count in per_batch)
    if not per_batch:
      return
    for c, count in enumerate(self.counts):
      for key in sorted(per_batch[0][c][0]):
        total = math.fsum(float(by_count[c][0][key]) for by_count in per_batch)
        yield f"{count_key(count)}/{key}", total / max(self.num_images, 1)
