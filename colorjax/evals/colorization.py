"""The "colorization" evaluator: per-image metrics averaged over the eval split.

For the averaged generator (keys as they are: `psnr`, `ssim`, ...), the raw generator (`raw_*`)
and the gray baseline, ab = 0 (`gray_*`): the metrics of `colorjax.evals.metrics` through
`steps.eval_step`. The eval JSON holds them in its `model`, `raw_generator` and
`gray_baseline` sections (`colorjax.evals.common.write_eval_json`).

  config.evals.metrics = dict(type="colorization", every=0)  # 0: eval_every_steps

Each batch's sums over its real rows are taken under jit on the sharded per-image metrics, so
XLA reduces them over the mesh and only scalars reach the hosts, where they are added up in
float64.
"""

from __future__ import annotations

import math
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections

from colorjax.evals import base
from colorjax.training import builders
from colorjax.training import steps


def masked_sums(per_image: dict[str, jax.Array],
                mask: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
  """({metric: sum over the batch's real rows}, number of real rows)."""
  # where, not a product: a padded (black) row may score NaN, and NaN * 0 is NaN.
  sums = {key: jnp.sum(jnp.where(mask, value.astype(jnp.float32), 0.0))
          for key, value in per_image.items()}
  return sums, jnp.sum(mask, dtype=jnp.int32)


@base.EVALUATORS.register("colorization")
class ColorizationMetrics(base.Evaluator):
  """Means over the eval split of the averaged generator's, raw generator's and gray
  baseline's per-image metrics."""

  def __init__(self, context: base.EvalContext, options: ml_collections.ConfigDict):
    super().__init__(context, options)
    replicated, batch = builders.shardings(context.mesh)
    # Per-image metrics of both generators and the gray baseline, sharded like the batch.
    self._metrics = jax.jit(lambda state, rgb: steps.eval_step(context.parts, state, rgb)[0],
                            out_shardings=batch)
    self._sums = jax.jit(masked_sums, out_shardings=replicated)

  def run(self, state: steps.TrainState, step: int) -> Iterator[tuple[str, float]]:
    del step
    batches, _ = self.context.batches()
    # Dispatched batch after batch, read once at the end: the device never waits for the host.
    per_batch = jax.device_get([self._sums(self._metrics(state, images), mask)
                                for images, mask in batches])
    self.num_images = sum(int(count) for _, count in per_batch)
    if not per_batch:
      return
    for key in sorted(per_batch[0][0]):
      total = math.fsum(float(sums[key]) for sums, _ in per_batch)
      yield key, total / max(self.num_images, 1)
