"""The "fid" evaluator: FID (Heusel et al. 2017) of the averaged generator's colorizations and
of the gray baseline's, against the eval images.

  config.evals.fid = dict(type="fid", every=0, weights="fid_inception.npz")  # 0: eval_every_steps

Skipped while `weights` is "": colorjax never downloads Inception weights (docs/evaluation.md,
FID).
Keys: `fid` (the averaged generator) and `gray_fid` (ab = 0), in the eval JSON's `model` and
`gray_baseline` sections.

How it scales: Inception-v3 runs under jit on the batch sharded over the mesh, each process
copies only its own rows' features to its host and adds them, real rows only, to float64
sufficient statistics (count, sum (2048,), sum of outer products (2048, 2048):
`frechet.FidAccumulator`). Only these statistics cross between processes, once per run: each
process's, gathered and summed in process order, so every process computes the same distance.
They cross as float64 bit patterns (uint32 words): JAX without x64 would round them to
float32, whose noise on a covariance from fewer images than dimensions changes its numerical
rank and so the distance. The truth's and gray baseline's statistics do not depend on the model
and are computed once per run of the trainer.
"""

from __future__ import annotations

import os
from typing import Iterator

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from colorjax.color import lab
from colorjax.core import distributed
from colorjax.evals import base
from colorjax.evals import frechet
from colorjax.evals import inception

# How pytorch-fid's weights become the .npz that `weights` names (colorjax/prepare.py).
CONVERT_COMMAND = ("python -m colorjax.prepare --src=pt_inception-2015-12-05-6726825d.pth "
                   "--fid_weights={weights}")


def reference_rgb(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(truth, gray baseline) of uint8 `images`, float32 RGB in [0, 1]."""
  return images.astype(jnp.float32) / 255.0, lab.gray_rgb(images).astype(jnp.float32)


def sum_over_processes(accumulators: dict[str, frechet.FidAccumulator]
                       ) -> dict[str, frechet.FidAccumulator]:
  """Each name's statistics summed over all processes, identical in every process."""
  if jax.process_count() == 1:
    return accumulators
  local = {name: (np.array([acc.count], np.float64), *acc.sums()[1:])
           for name, acc in accumulators.items()}
  # Exact float64 across processes without x64: the bit patterns cross as uint32 words.
  words = jax.tree.map(lambda x: np.ascontiguousarray(x, np.float64).view(np.uint32), local)
  gathered = multihost_utils.process_allgather(words)  # (processes, ...) per array.
  total = jax.tree.map(lambda x: np.asarray(x).view(np.float64).sum(axis=0), gathered)
  return {name: frechet.FidAccumulator.from_sums(round(float(count[0])), mean_sum, outer)
          for name, (count, mean_sum, outer) in total.items()}


@base.EVALUATORS.register("fid")
class Fid(base.Evaluator):
  """FID of the averaged generator and of the gray baseline against the truth."""

  def __init__(self, context: base.EvalContext, options: ml_collections.ConfigDict):
    super().__init__(context, options)
    module, params = inception.load_inception(options.weights)
    _, batch = distributed.shardings(context.mesh)
    # Not jax.device_put: across processes it gathers all 22M values to check they agree.
    self._params = jax.tree.map(lambda x: base.replicated(np.asarray(x), context.mesh), params)
    self._features = jax.jit(lambda params, rgb: module.apply({"params": params}, rgb),
                             out_shardings=batch)
    self._reference_rgb = jax.jit(reference_rgb, out_shardings=(batch, batch))
    # The averaged generator alone: FID needs neither the raw generator nor the metrics of the
    # shared eval step.
    self._averaged_rgb = jax.jit(context.predictor.rgb, out_shardings=batch)
    # The truth's and gray baseline's statistics, once computed: the eval data do not change.
    self._reference: dict[str, frechet.FidAccumulator] | None = None
    self._gray_fid: float | None = None

  @classmethod
  def check_options(cls, name: str, options: ml_collections.ConfigDict) -> None:
    weights = options.get("weights", "")
    if weights and not os.path.isfile(weights):
      raise ValueError(f"evals.{name}.weights={weights!r} does not exist: convert pytorch-fid's "
                       f"Inception weights with `{CONVERT_COMMAND.format(weights=weights)}` "
                       f"(docs/evaluation.md, FID), or drop the flag to skip FID")

  @classmethod
  def enabled(cls, options: ml_collections.ConfigDict) -> bool:
    return bool(options.get("weights", ""))

  def _local_rows(self, x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded array: what its own devices hold."""
    return np.asarray(multihost_utils.global_array_to_host_local_array(x, self.mesh, P("data")))

  def statistics(self, variables: base.Variables) -> dict[str, frechet.FidAccumulator]:
    """{"truth", "model", "gray"}: feature statistics over the eval split, all processes."""
    names = ("model",) if self._reference is not None else ("model", "truth", "gray")
    local = {name: frechet.FidAccumulator() for name in names}
    batches, _ = self.context.batches()
    for images, mask in batches:
      rgb = {"model": self._averaged_rgb(variables["averaged"], images)}
      if self._reference is None:
        rgb["truth"], rgb["gray"] = self._reference_rgb(images)
      real = self._local_rows(mask)
      for name, colors in rgb.items():
        features = self._local_rows(self._features(self._params, colors))[real]
        if len(features):
          local[name].update(features)
    summed = sum_over_processes(local)
    if self._reference is None:
      self._reference = {name: summed[name] for name in ("truth", "gray")}
    return {**self._reference, "model": summed["model"]}

  def run(self, variables: base.Variables, step: int) -> Iterator[tuple[str, float]]:
    del step
    stats = self.statistics(variables)
    self.num_images = stats["model"].count
    # The Cholesky form gives the same distance as pytorch-fid's sqrtm, exactly also for the
    # rank-deficient covariances of small eval sets, in a second instead of a minute.
    yield "fid", frechet.fid_from_accumulators(stats["model"], stats["truth"], method="cholesky")
    if self._gray_fid is None:
      self._gray_fid = frechet.fid_from_accumulators(stats["gray"], stats["truth"],
                                                     method="cholesky")
    yield "gray_fid", self._gray_fid
