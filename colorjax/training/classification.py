"""Classification colorizers in the trainer: ab bins, decoding, the CE loss and the colour prior
of the training data (Zhang, Isola & Efros 2016), built from config. The math is in colorjax.color.

The prior counts every pixel's nearest ab bin over `color.prior_num_images` training images
(centre crops at the config's image size; images with no chroma are skipped), smooths the
distribution with a Gaussian (sigma 5) over the bins and keeps it with its rebalancing weights
(lambda 0.5, E_p[w] = 1) in `<workdir>/color_prior.npz`. The trainer computes it on first use
when the file is missing and `color.prior_path` is empty; `python -m colorjax.main --mode=prior`
computes it alone.

`config.color.decode` chooses how a generator's outputs become ab:
  * "regression": the generator's `ab` output (tanh regression head);
  * "annealed_mean" / "mode" / "mean": decoded from its `logits` over the ab bins
    (Zhang et al.; annealed mean at `config.color.temperature`), upsampled to full size.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from colorjax.color import decode
from colorjax.color import gamut
from colorjax.color import lab
from colorjax.color import rebalance
from colorjax.color import soft_encoding
from colorjax.core import files

Outputs = dict[str, jax.Array]
DECODERS = ("regression", "annealed_mean", "mode", "mean")


def uses_bins(config: ml_collections.ConfigDict) -> bool:
  return config.loss.ce_weight > 0 or config.color.decode != "regression"


def load_bins(config: ml_collections.ConfigDict) -> np.ndarray:
  return gamut.load_bins(config.color.bins_path or None, config.color.grid)


def make_decoder(config: ml_collections.ConfigDict,
                 bins: np.ndarray | None) -> Callable[[Outputs], jax.Array]:
  """Generator outputs -> normalised ab (B, H, W, 2) at the input's resolution."""
  mode = config.color.decode
  if mode not in DECODERS:
    raise ValueError(f"color.decode {mode!r} is not one of {DECODERS}")
  if mode == "regression":
    return lambda out: out["ab"]
  bins = jnp.asarray(bins, jnp.float32)
  temperature = {"annealed_mean": config.color.temperature, "mode": 0.0, "mean": 1.0}[mode]

  def decode_outputs(out: Outputs) -> jax.Array:
    size = out["ab"].shape[1:3]
    return decode.logits_to_ab_norm(out["logits"], bins, size, temperature)
  return decode_outputs


def make_classification_loss(config: ml_collections.ConfigDict, bins: np.ndarray,
                             weights: np.ndarray | None
                             ) -> Callable[[Outputs, jax.Array], jax.Array]:
  """(outputs, true normalised ab) -> rebalanced CE at the logits' resolution."""
  bins_j = jnp.asarray(bins, jnp.float32)
  weights_j = None if weights is None else jnp.asarray(weights, jnp.float32)

  def loss(out: Outputs, true_ab_norm: jax.Array) -> jax.Array:
    logits = out["logits"]
    target = soft_encoding.area_downsample(lab.denormalize_ab(true_ab_norm), logits.shape[1:3])
    return soft_encoding.rebalanced_cross_entropy(logits, target, bins_j, weights_j,
                                             config.color.num_neighbors, config.color.sigma)
  return loss


def rebalanced_pixel_weights(prior: rebalance.Prior) -> Callable[[jax.Array], jax.Array]:
  """true ab (Lab units) -> per-pixel weight of its nearest bin, for the rebalanced AuC."""
  bins = jnp.asarray(prior.bins, jnp.float32)
  weights = jnp.asarray(prior.weights, jnp.float32)
  return lambda true_ab: weights[soft_encoding.nearest_bin(true_ab, bins)]


def generator_kwargs(config: ml_collections.ConfigDict, bins: np.ndarray | None) -> dict[str, Any]:
  """The generator's options with `num_bins` set from the bins when the model takes it."""
  kwargs = config.model.generator_kwargs.to_dict()
  if bins is not None and config.model.generator == "zhang_cic":
    given = kwargs.setdefault("num_bins", len(bins))
    if given != len(bins):
      raise ValueError(f"model.generator_kwargs.num_bins={given} but the ab bins have "
                       f"Q={len(bins)} (color.grid={config.color.grid}, "
                       f"color.bins_path={config.color.bins_path!r})")
  return kwargs


# ------------------------------------------------------------------------------------------
# The colour prior of the training data.
# ------------------------------------------------------------------------------------------
PRIOR_FILENAME = "color_prior.npz"


def _prior_batches(config: ml_collections.ConfigDict, num_images: int,
                   batch_size: int = 32) -> tuple[Iterator[np.ndarray], int]:
  # The input pipeline loads only here: inference builds its decoder from this module.
  import grain  # pylint: disable=g-import-not-at-top
  from colorjax.data import pipeline, sources  # pylint: disable=g-import-not-at-top
  ds = grain.MapDataset.source(sources.create_source(config.data, train=True))
  if 0 < num_images < len(ds):
    # Evenly spaced records: folders and many datasets are ordered by class.
    ds = ds[::len(ds) // num_images][:num_images]
  ds = ds.map(pipeline.EvalTransform(config.data.image_size)).filter(lambda x: x is not None)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.data.read_threads))
  stack_images = lambda examples: np.stack([e["image"] for e in examples])
  return iter(it.batch(batch_size, batch_fn=stack_images)), len(ds)


def compute_prior(config: ml_collections.ConfigDict, progress: bool = True) -> rebalance.Prior:
  import tqdm  # pylint: disable=g-import-not-at-top
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
