"""The "colorization" evaluator: per-image metrics averaged over the eval split.

For the averaged generator (keys as they are: `psnr`, `ssim`, ...), the raw generator (`raw_*`)
and the gray baseline, ab = 0 (`gray_*`): the metrics of `colorjax.evals.metrics`
(`per_image_metrics`). The eval JSON holds them in its `model`, `raw_generator` and
`gray_baseline` sections (`colorjax.evals.common.write_eval_json`).

  config.evals.metrics = dict(type="colorization", every=0)  # 0: eval_every_steps

Each batch's sums over its real rows are taken under jit on the sharded per-image metrics, so
XLA reduces them over the mesh and only scalars reach the hosts, where they are added up in
float64.
"""

from __future__ import annotations

import functools
import math
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections

from colorjax.color import lab
from colorjax.core import distributed
from colorjax.evals import base
from colorjax.evals import metrics as metrics_lib


def per_image_metrics(predictor: base.Predictor, variables: base.Variables,
                      rgb: jax.Array) -> dict[str, jax.Array]:
  """Per-image metrics (B,) of the averaged generator (keys as they are), of the raw generator
  (`raw_*`) and of the gray baseline (`gray_*`) on uint8 RGB `rgb`."""
  l, true_ab = lab.uint8_to_model_inputs(rgb)
  scores = {}
  for name, prefix in (("averaged", ""), ("raw", "raw_")):
    ab = predictor.predict(variables[name], l)
    per_image = metrics_lib.image_metrics(l, ab, true_ab, pixel_weights=predictor.pixel_weights)
    # The gray baseline and the truth's colourfulness are the same for both: reported once.
    scores.update({prefix + k: v for k, v in per_image.items()
                   if not prefix or not (k.startswith("gray_") or k == "true_colorfulness")})
  return scores


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
    replicated, batch = distributed.shardings(context.mesh)
    # Per-image metrics of both generators and the gray baseline, sharded like the batch.
    self._metrics = jax.jit(functools.partial(per_image_metrics, context.predictor),
                            out_shardings=batch)
    self._sums = jax.jit(masked_sums, out_shardings=replicated)

  def run(self, variables: base.Variables, step: int) -> Iterator[tuple[str, float]]:
    del step
    batches, _ = self.context.batches()
    # Dispatched batch after batch, read once at the end: the device never waits for the host.
    per_batch = jax.device_get([self._sums(self._metrics(variables, images), mask)
                                for images, mask in batches])
    self.num_images = sum(int(count) for _, count in per_batch)
    if not per_batch:
      return
    for key in sorted(per_batch[0][0]):
      total = math.fsum(float(sums[key]) for sums, _ in per_batch)
      yield key, total / max(self.num_images, 1)
