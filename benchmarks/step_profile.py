"""Where the CPU time of the jitted train step goes: a `jax.profiler` trace of a few steps,
every XLA op's time summed per step and grouped by what the op does.

  python benchmarks/step_profile.py --configs=pix2pix --sizes=32 --batch_sizes=64 --steps=3

Groups, by the name XLA gives the op (fusions are named after their root):
  matmul            `ynn_fusion*` / `dot*`: the convolutions' and dense layers' matrix products
                    (XLA:CPU hands dots to its YNNPACK/Eigen kernels)
  copy / transpose  layout changes (`copy*`, `transpose*`): e.g. the patch matrix transposed
                    before a weight-gradient matmul
  im2col gather     `concatenate*`, `pad*`, `slice*`, `dynamic-slice*`: building patch matrices
                    and scattering their gradients back
  elementwise       everything else: BatchNorm and activation passes (their statistics fused
                    in), Adam, the EMA, Lab
The matmul group's GFLOP/s uses XLA's cost analysis of the whole step (nearly all of its FLOPs
are in the dots) over the group's time. Group times are summed over XLA's worker threads, so
"busy" (summed op time over threads x step time) says how much of the cores the ops used; the
rest is time a core waited (ops too small to split, or the other thread's share of one).

Measured 2026-11-22 on the 2-core CPU of this project's machine (benchmarks/README.md,
"Train step", has the table).
"""

from __future__ import annotations

import collections
import datetime
import glob
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as bench  # noqa: E402  (benchmarks/train_step.py: build_config, _batch)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from colorjax.training import run_setup  # noqa: E402  pylint: disable=g-import-not-at-top

# --configs, --sizes, --batch_sizes and --steps are train_step.py's flags (the first of each).
FLAGS = flags.FLAGS
_TOP = flags.DEFINE_integer("top", 12, "How many of the slowest ops to list.")

GROUPS = (("matmul", ("ynn_fusion", "dot")), ("copy / transpose", ("copy", "transpose")),
          ("im2col gather", ("concatenate", "pad", "slice", "dynamic-slice")))
# Trace events that wrap others (the executor, thread-pool waits), not ops.
_WRAPPERS = ("ThunkExecutor", "SlinkyThreadPool", "Await")


def group_of(op_name: str) -> str:
  for group, prefixes in GROUPS:
    if op_name.startswith(prefixes):
      return group
  return "elementwise"


def op_times(trace_dir: str, num_steps: int) -> dict[str, float]:
  """Milliseconds per step of every XLA op in the trace (summed over threads)."""
  path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
  plane = jax.profiler.ProfileData.from_file(path).find_plane_with_name("/host:CPU")
  totals = collections.Counter()
  for line in plane.lines:
    if not line.name.startswith("tf_XLAEigen"):  # The XLA:CPU worker threads.
      continue
    for event in line.events:
      if not event.name.startswith(_WRAPPERS):
        totals[event.name] += event.duration_ns / 1e6 / num_steps
  return dict(totals)


def main(argv):
  del argv
  name, size, batch_size = FLAGS.configs[0], int(FLAGS.sizes[0]), int(FLAGS.batch_sizes[0])
  num_steps = FLAGS.steps
  setup = run_setup.RunSetup.create(bench.build_config(name, size, batch_size, "float32", []))
  state = setup.init_state()
  step = setup.train_step()
  # pylint: disable-next=protected-access
  batch = {"image": bench._batch(size, batch_size, setup.batch_sharding)}
  flops = step.lower(state, batch).compile().cost_analysis()
  flops = float((flops[0] if isinstance(flops, (list, tuple)) else flops).get("flops", 0.0))
  for _ in range(2):  # Compile and warm up outside the trace.
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir):
      for _ in range(num_steps):
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
    step_ms = (time.perf_counter() - start) / num_steps * 1e3
    ops = op_times(trace_dir, num_steps)
  groups = collections.Counter()
  for op, ms in ops.items():
    groups[group_of(op)] += ms
  total = sum(groups.values())
  print(f"# {name} train step, {size} px, batch {batch_size}, "
        f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores), jax {jax.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load "
        f"{os.getloadavg()[0]:.2f}; step {step_ms:.0f} ms (traced), {flops / 1e9:.1f} GFLOP; "
        f"ops busy {total / (os.cpu_count() * step_ms):.0%} of {os.cpu_count()} cores")
  print("| group | ms per step (summed over threads) | share |")
  print("|---|---:|---:|")
  for group, ms in groups.most_common():
    print(f"| {group} | {ms:.0f} | {ms / total:.0%} |")
  matmul_s = groups["matmul"] / 1e3
  if matmul_s:
    print(f"\nmatmul: {flops / 1e9 / matmul_s:.0f} GFLOP/s of summed thread time, "
          f"{flops / 1e9 / (step_ms / 1e3):.0f} GFLOP/s of the step's wall time")
  print(f"\nslowest {_TOP.value} ops (ms per step):")
  for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:_TOP.value]:
    print(f"  {ms:8.1f}  {group_of(op):16s}  {op}")


if __name__ == "__main__":
  app.run(main)
