"""Classification colorizers in the trainer: ab bins, decoding and the CE loss (Zhang, Isola &
Efros 2016), built from config. The math is in colorjax.color; the colour prior of the training
data, which weights the loss, is colorjax/training/prior.py's (it reads the data: inference,
which builds its decoder here, does not load the input pipeline).

`config.color.decode` chooses how a generator's outputs become ab:
  * "regression": the generator's `ab` output (tanh regression head);
  * "annealed_mean" / "mode" / "mean": decoded from its `logits` over the ab bins
    (Zhang et al.; annealed mean at `config.color.temperature`), upsampled to full size.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from colorjax.color import decode
from colorjax.color import gamut
from colorjax.color import lab
from colorjax.color import rebalance
from colorjax.color import soft_encoding

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
