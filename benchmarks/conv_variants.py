"""The pix2pix train step (and EMA inference) on CPU with each convolution implementation,
timed alternately in one process so that machine load affects every variant alike.

  python benchmarks/conv_variants.py --sizes=32,128,256 --batch_sizes=64,16,4 --rounds=5
  python benchmarks/conv_variants.py --inference --sizes=256 --batch_sizes=8

Variants (chosen at trace time, see `VARIANTS`):
  im2col    im2col + one matmul per convolution, gradients by autodiff (the previous code).
  matmul    `colorjax.models.cpu_conv`: gradients as matmuls (transposed convolution by phases),
            padding-only taps skipped; transposed convolutions combined where H >= 8.
  phases    as matmul, transposed convolutions always per phase.
  combined  as matmul, transposed convolutions always combined (one wider matmul).
Each round calls every variant's jitted step once, in turn; the table gives each variant's
median and best seconds and its speed relative to "im2col" (the ratio of medians).

Measured 2026-11-22 on 2 CPU cores shared with other jobs (load average 4-7, so absolute times
are 2-3x a quiet machine's; JAX 0.10.2), matmul vs im2col (ratio of medians, alternating):
train 32 px batch 64: 1.12x (8 rounds); 128 px batch 16: 1.12x (8 rounds, best-of: 0.95x);
256 px batch 4: 1.00x (4 rounds); inference 256 px batch 8: 0.98x (8 rounds). At 32 px, phases
0.91x and combined 1.03x against matmul's 1.06x in the same earlier run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as bench  # noqa: E402  (benchmarks/train_step.py: build_config, _batch)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from colorjax.models import cpu_conv  # noqa: E402  pylint: disable=g-import-not-at-top
from colorjax.models import layers  # noqa: E402  pylint: disable=g-import-not-at-top
from colorjax.training import run_setup  # noqa: E402  pylint: disable=g-import-not-at-top
from colorjax.training import steps  # noqa: E402  pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
# --sizes, --batch_sizes (one per size) and --inference are train_step.py's flags.
flags.DEFINE_list("variants", ["im2col", "matmul"], "Variants to compare (first = baseline).")
flags.DEFINE_integer("rounds", 5, "Timed rounds (each calls every variant once).")

# name -> (layers.CPU_MATMUL_GRADIENTS, cpu_conv.COMBINED_MAX_WASTE).
VARIANTS = {
    "im2col": (False, cpu_conv.COMBINED_MAX_WASTE),
    "matmul": (True, cpu_conv.COMBINED_MAX_WASTE),
    "phases": (True, -1.0),
    "combined": (True, 1e9),
}


@contextlib.contextmanager
def variant(name: str):
  saved = layers.CPU_MATMUL_GRADIENTS, cpu_conv.COMBINED_MAX_WASTE
  layers.CPU_MATMUL_GRADIENTS, cpu_conv.COMBINED_MAX_WASTE = VARIANTS[name]
  try:
    yield
  finally:
    layers.CPU_MATMUL_GRADIENTS, cpu_conv.COMBINED_MAX_WASTE = saved


def build(name: str, size: int, batch: int, inference: bool):
  """A zero-argument callable running one step of `name` (compiled before returning)."""
  setup = run_setup.RunSetup.create(bench.build_config("pix2pix", size, batch, "float32", []))
  parts = setup.parts
  state = setup.init_state()
  rgb = bench._batch(size, batch, setup.batch_sharding)  # pylint: disable=protected-access
  with variant(name):
    if inference:
      from colorjax.color import lab  # pylint: disable=g-import-not-at-top
      l = jax.jit(lambda x: lab.uint8_to_model_inputs(x)[0])(rgb)
      forward = jax.jit(lambda v, l: steps.predict_ab(parts, v, l)).lower(state.ema, l).compile()
      return lambda: forward(state.ema, l)
    train_step = setup.train_step()
    compiled = train_step.lower(state, {"image": rgb}).compile()
  holder = [state]

  def call():
    holder[0], metrics = compiled(holder[0], {"image": rgb})
    return metrics
  return call


def main(argv):
  del argv
  names = FLAGS.variants
  print(f"device {jax.devices()[0].device_kind}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"load {os.getloadavg()[0]:.2f}")
  for size, batch in zip(map(int, FLAGS.sizes), map(int, FLAGS.batch_sizes)):
    calls = {n: build(n, size, batch, FLAGS.inference) for n in names}
    for n in names:  # Warm-up call (allocation).
      jax.block_until_ready(calls[n]())
    times = {n: [] for n in names}
    for r in range(FLAGS.rounds):
      order = names if r % 2 == 0 else names[::-1]
      for n in order:
        start = time.perf_counter()
        jax.block_until_ready(calls[n]())
        times[n].append(time.perf_counter() - start)
    base = float(np.median(times[names[0]]))
    mode = "inference" if FLAGS.inference else "train"
    for n in names:
      med, best = float(np.median(times[n])), min(times[n])
      print(f"{mode} {size:4d} px b{batch:3d} {n:9s} median {med:7.3f} s  best {best:7.3f} s  "
            f"{batch / med:7.1f} img/s  x{base / med:5.2f} vs {names[0]}", flush=True)
  print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  app.run(main)
