"""Cost of Zhang et al.'s soft encoding + rebalanced cross-entropy next to zhang_cic's forward pass.

For each input size it times, per image, jitted and with compilation excluded:
  * sparse loss: `soft_encoding.rebalanced_cross_entropy` (k-nearest soft encoding, gathered
    log-probabilities), value and gradient w.r.t. the logits, at the logits' resolution (1/4 of
    the input, as zhang_cic and the paper do) and at full resolution for reference;
  * dense loss: the same loss with the soft target scattered into a dense (..., Q) array, the
    textbook formulation, for comparison;
  * the zhang_cic forward pass (inference mode).
It also reports XLA's temporary-buffer size for each compiled loss (`memory_analysis`).

Usage:
  python3 benchmarks/soft_encoding.py [--sizes 64 256] [--batch 4] [--width 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from skimage import data, transform

from colorjax.color import gamut, lab, rebalance, soft_encoding
from colorjax.models import build_generator


def dense_rebalanced_cross_entropy(logits: jax.Array, ab_target: jax.Array, bins: jax.Array,
                                   class_weights: jax.Array, k: int = soft_encoding.DEFAULT_K,
                                   sigma: float = soft_encoding.DEFAULT_SIGMA) -> jax.Array:
  """The same loss with a dense (..., Q) soft target (one-hot rows weighted and summed)."""
  indices, weights = soft_encoding.soft_encode(ab_target, bins, k, sigma)
  target = jnp.sum(jax.nn.one_hot(indices, logits.shape[-1]) * weights[..., None], axis=-2)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  pixel_weights = class_weights[jnp.argmax(target, axis=-1)]
  return jnp.mean(pixel_weights * -jnp.sum(target * log_probs, axis=-1))


def photo_batch(size: int, batch: int) -> np.ndarray:
  """`batch` uint8 photos (scikit-image's astronaut, chelsea, coffee, rocket), size x size."""
  images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
  return np.stack([
      (transform.resize(images[i % len(images)], (size, size), anti_aliasing=True) * 255)
      .round().astype(np.uint8) for i in range(batch)])


def time_call(fn: Callable[..., Any], *args: Any, repeats: int) -> float:
  """Fastest wall time (s) of fn(*args) over `repeats` runs after one warm-up (compile) run.

  The minimum, not the median: on a shared machine the slower runs measure the neighbours.
  """
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.min(times))


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
  """XLA's temporary allocation for the compiled fn (the intermediates it keeps live)."""
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  return int(analysis.temp_size_in_bytes) if analysis is not None else -1


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--width", type=int, default=64, help="zhang_cic base width")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  bins = jnp.asarray(gamut.gamut_bins(gamut.DEFAULT_GRID))
  num_bins = len(bins)
  # Rebalancing weights from the benchmark photos themselves; their values do not affect time.
  class_weights = jnp.asarray(
      rebalance.estimate_prior([photo_batch(64, 4)], np.asarray(bins)).weights)
  model = build_generator("zhang_cic", {"width": args.width, "num_bins": num_bins}, jnp.float32)
  variables = jax.jit(model.init, static_argnames="train")(
      jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
  forward = jax.jit(lambda v, l: model.apply(v, l, train=False))

  def loss_and_grad(loss_fn):
    return jax.jit(jax.value_and_grad(
        lambda logits, ab: loss_fn(logits, ab, bins, class_weights)))

  sparse = loss_and_grad(soft_encoding.rebalanced_cross_entropy)
  dense = loss_and_grad(dense_rebalanced_cross_entropy)

  print(f"device: {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; Q = {num_bins}, k = {soft_encoding.DEFAULT_K}, batch "
        f"{args.batch}, zhang_cic width {args.width}; best of {args.repeats}, per image")
  print(f"{'input':>7} {'loss at':>8} {'sparse loss+grad':>17} {'temp MiB':>9} "
        f"{'dense loss+grad':>16} {'temp MiB':>9} {'zhang_cic fwd':>14}")
  for size in args.sizes:
    l, ab_norm = lab.uint8_to_model_inputs(jnp.asarray(photo_batch(size, args.batch)))
    ab = lab.denormalize_ab(ab_norm)
    fwd_ms = time_call(forward, variables, l, repeats=args.repeats) / args.batch * 1e3
    for loss_size in (size // 4, size):
      target = soft_encoding.area_downsample(ab, (loss_size, loss_size))
      logits = jax.random.normal(jax.random.key(1), (args.batch, loss_size, loss_size, num_bins))
      row = []
      for fn, loss_fn in ((sparse, soft_encoding.rebalanced_cross_entropy),
                          (dense, dense_rebalanced_cross_entropy)):
        ms = time_call(fn, logits, target, repeats=args.repeats) / args.batch * 1e3
        mib = temp_bytes(jax.value_and_grad(
            lambda lg, t, f=loss_fn: f(lg, t, bins, class_weights)), logits, target) / 2**20
        row += [ms, mib]
      label = "1/4" if loss_size != size else "full"
      print(f"{size:>4} px {label:>5} {loss_size:>3} {row[0]:>12.2f} ms {row[1]:>9.1f} "
            f"{row[2]:>13.2f} ms {row[3]:>9.1f} {fwd_ms:>11.1f} ms")


if __name__ == "__main__":
  main()
