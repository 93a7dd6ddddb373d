"""The colour prior of the training data (Zhang, Isola & Efros 2016).

It counts every pixel's nearest ab bin over `color.prior_num_images` training images (centre
crops at the config's image size; images with no chroma are skipped), smooths the distribution
with a Gaussian (sigma 5) over the bins and keeps it with its rebalancing weights (lambda 0.5,
E_p[w] = 1) in `<workdir>/color_prior.npz`. The trainer computes it on first use when the file
is missing and `color.prior_path` is empty; `python -m colorjax.main --mode=prior` computes it
alone. It rebalances the classification loss and, for every config, weights the rebalanced
AuC in eval.
"""

from __future__ import annotations

import os
from typing import Iterator

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import tqdm

from colorjax.color import rebalance
from colorjax.core import files
from colorjax.data import pipeline
from colorjax.data import sources
from colorjax.training.classification import load_bins

PRIOR_FILENAME = "color_prior.npz"


def _prior_batches(config: ml_collections.ConfigDict, num_images: int,
                   batch_size: int = 32) -> tuple[Iterator[np.ndarray], int]:
  ds = grain.MapDataset.source(sources.create_source(config.data, train=True))
  if 0 < num_images < len(ds):
    # Evenly spaced records: folders and many datasets are ordered by class.
    ds = ds[::len(ds) // num_images][:num_images]
  ds = ds.map(pipeline.EvalTransform(config.data.image_size)).filter(lambda x: x is not None)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.data.read_threads))
  stack_images = lambda examples: np.stack([e["image"] for e in examples])
  return iter(it.batch(batch_size, batch_fn=stack_images)), len(ds)


def compute_prior(config: ml_collections.ConfigDict, progress: bool = True) -> rebalance.Prior:
  bins = load_bins(config)
  batches, total = _prior_batches(config, config.color.prior_num_images)
  bar = tqdm.tqdm(total=total, unit="img", desc="colour prior", disable=not progress)
  def counted():
    for batch in batches:
      bar.update(len(batch))
      yield batch
  prior = rebalance.estimate_prior(counted(), bins, config.color.grid,
                                  config.color.rebalance_lambda, config.color.sigma)
  bar.close()
  return prior


def prior_path(config: ml_collections.ConfigDict, workdir: str) -> str:
  return config.color.prior_path or os.path.join(workdir, PRIOR_FILENAME)


def write_prior(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Computes the prior and writes it to `prior_path`; returns a line describing it."""
  path = prior_path(config, workdir)
  prior = compute_prior(config)
  with files.atomic_path(os.path.abspath(path), suffix=".npz") as tmp:
    rebalance.save_prior(tmp, prior)
  peak = prior.bins[int(np.argmax(prior.prior))]
  return (f"wrote {path}: Q={len(prior.bins)} bins, {int(prior.counts.sum())} pixels counted, "
          f"prior peaks at (a, b) = ({peak[0]:.0f}, {peak[1]:.0f}), weights in "
          f"[{prior.weights.min():.3f}, {prior.weights.max():.3f}]")


def load_or_compute_prior(config: ml_collections.ConfigDict, workdir: str) -> rebalance.Prior:
  """The prior at `color.prior_path` or in the workdir; computed and saved there if missing."""
  path = prior_path(config, workdir)
  if os.path.exists(path):
    prior = rebalance.load_prior(path)
  elif config.color.prior_path:
    raise FileNotFoundError(f"color.prior_path={path!r} does not exist; create it with "
                            f"`python -m colorjax.main --mode=prior --config=... --workdir=...`")
  else:
    logging.info("no colour prior at %s: computing it over the training data", path)
    prior = compute_prior(config, progress=jax.process_index() == 0)
    if jax.process_index() == 0:
      with files.atomic_path(os.path.abspath(path), suffix=".npz") as tmp:
        rebalance.save_prior(tmp, prior)
  bins = load_bins(config)
  if prior.bins.shape != bins.shape or not np.allclose(prior.bins, bins):
    raise ValueError(f"the prior in {path!r} was computed for {len(prior.bins)} other bins than "
                     f"the config's {len(bins)}; delete it or set color.prior_path")
  return prior
