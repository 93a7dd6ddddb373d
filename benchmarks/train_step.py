"""Times the real jitted train step (or the EMA generator's forward) of configs at several sizes.

  python benchmarks/train_step.py --configs=pix2pix --sizes=256,128,32 --batch_sizes=4,16,64 \
    --steps=15 [--dtype=bfloat16] [--inference] [--out=benchmarks/results.jsonl]

Each row builds the config's `run_setup.RunSetup` on the mesh of all devices, the object the
trainer uses, and times its jitted `train_step` (state donated, state replicated, batch sharded
over `data`). Compilation is timed on its own (`lower().compile()`),
then the first call; then the median of `--steps` calls, each synchronised with `block_until_ready`.
FLOPs come from XLA's cost analysis of the compiled step (per device, times the device count).
On a GPU the achieved TFLOP/s and the MFU against the device kind's dense peak are reported
(MFU: against the row's dtype's peak, TF32 for float32; MFU(bf16): against the bf16 peak).

`--sizes` and `--batch_sizes` pair up element by element (one batch size applies to every size).
The U-Net's depth follows the size (5 levels at 32 px ... 8 at 256, `unet.num_downs_for`).
Each row is printed and appended to `--out` as one JSON line with the machine, JAX version,
git commit, date, load average and XLA_FLAGS, so timings from different setups stay apart.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import jax
from jax.sharding import NamedSharding
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import git_commit  # noqa: E402  (benchmarks/common.py)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from colorjax.core import config_files  # noqa: E402  pylint: disable=g-import-not-at-top
from colorjax.models import unet  # noqa: E402  pylint: disable=g-import-not-at-top
from colorjax.training import run_setup  # noqa: E402  pylint: disable=g-import-not-at-top
from colorjax.training import steps  # noqa: E402  pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["pix2pix"], "Config names under configs/.")
flags.DEFINE_list("sizes", ["32", "64", "128", "256"], "Image sizes (px).")
flags.DEFINE_list("batch_sizes", ["16"], "Global batch sizes: one, or one per size.")
flags.DEFINE_integer("steps", 15, "Timed calls after the first (compile) call; the median is kept.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
flags.DEFINE_bool("inference", False, "Time the EMA generator forward (steps.predict_ab) only.")
flags.DEFINE_string("out", "benchmarks/results.jsonl", "JSON lines appended here (\"\" = none).")
flags.DEFINE_multi_string("override", [], "key=value applied to every config (compare syntax).")

# Dense peak TFLOP/s by device kind (substring of `device_kind`, first match wins) and dtype.
# float32 is the TF32 tensor-core peak: XLA on GPUs runs float32 convs and matmuls in TF32 at
# JAX's default precision (the plain FP32 peaks are 67 on H100/H200 SXM and 19.5 on A100).
# H100 SXM and H200: NVIDIA's H100/H200 datasheets (BF16 1979 / TF32 989 with 2:4 sparsity;
# dense is half). PCIe and NVL cards run at lower clocks and power: they are matched first.
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100 NVL", {"bfloat16": 835.0, "float32": 418.0}),
    ("H200", {"bfloat16": 989.0, "float32": 495.0}),
    ("H100", {"bfloat16": 989.0, "float32": 495.0}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
)


@dataclasses.dataclass
class Result:
  """One measured row."""
  config: str
  mode: str
  size: int
  batch: int
  dtype: str
  compile_s: float  # Lowering and XLA compilation.
  first_call_s: float  # The first call after compiling (allocation, warm-up).
  step_s: float  # Median over the timed calls.
  step_s_min: float
  images_per_sec: float
  gflop_per_image: float
  tflops: float | None  # Achieved, on GPUs only.
  mfu: float | None  # Against the dense peak of this row's dtype (TF32 for float32).
  mfu_bf16_peak: float | None = None  # Against the bf16 dense peak, whatever the dtype: the
  # one yardstick for bf16 and fp32 rows side by side.


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  for name, peaks in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peaks[dtype]
  return None


def build_config(name: str, size: int, batch: int, dtype: str, overrides: Sequence[str]):
  """The config at a size and batch: U-Net depth derived from the size."""
  config = config_files.load(name)
  config.batch_size = batch
  config.data.image_size = size
  config.dtype = dtype
  if config.model.generator == "unet":
    config.model.generator_kwargs.num_downs = unet.num_downs_for(size)
  config_files.apply_overrides(config, overrides)
  return config


def _compile(jitted: Callable[..., Any], *args: Any) -> tuple[float, float]:
  """(seconds to lower and compile, FLOPs of one call from XLA's cost analysis).

  The analysis is of one device's SPMD program, so it is scaled by the device count. The jit
  cache keeps the executable, so the first call after this one does not compile again.
  """
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per computation.
    analysis = analysis[0]
  return seconds, float(analysis.get("flops", float("nan"))) * jax.device_count()


def _time_calls(call: Callable[[], Any], num_steps: int) -> tuple[float, list[float]]:
  """(first call's seconds, the following calls' seconds), each call synchronised."""
  start = time.perf_counter()
  jax.block_until_ready(call())
  first = time.perf_counter() - start
  times = []
  for _ in range(num_steps):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return first, times


def _batch(size: int, batch: int, sharding: NamedSharding) -> jax.Array:
  """Random uint8 RGB: the step's cost does not depend on pixel values."""
  rgb = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  return jax.device_put(rgb, sharding)


def measure(name: str, size: int, batch: int, dtype: str, num_steps: int, inference: bool,
            overrides: Sequence[str] = ()) -> Result:
  """Compiles and times one (config, size, batch) on the mesh of all devices."""
  # Validated and built as the trainer does; Colorful's prior only reweights the loss: no cost.
  setup = run_setup.RunSetup.create(build_config(name, size, batch, dtype, overrides))
  parts, batch_sharding = setup.parts, setup.batch_sharding
  state = setup.init_state()
  rgb = _batch(size, batch, batch_sharding)

  if inference:
    from colorjax.color import lab  # pylint: disable=g-import-not-at-top
    l = jax.jit(lambda x: lab.uint8_to_model_inputs(x)[0], out_shardings=batch_sharding)(rgb)
    forward = jax.jit(functools.partial(steps.predict_ab, parts),
                      in_shardings=(setup.state_shardings.ema, batch_sharding),
                      out_shardings=batch_sharding)
    compile_s, flops = _compile(forward, state.ema, l)
    first, times = _time_calls(lambda: forward(state.ema, l), num_steps)
  else:
    train_step = setup.train_step()  # Exactly the trainer's.
    batch_dict = {"image": rgb}
    compile_s, flops = _compile(train_step, state, batch_dict)
    holder = [state]

    def call():
      holder[0], metrics = train_step(holder[0], batch_dict)
      return metrics
    first, times = _time_calls(call, num_steps)

  step_s = float(np.median(times))
  tflops = mfu = mfu_bf16 = None
  if jax.devices()[0].platform == "gpu":
    tflops = flops / step_s / 1e12
    peak = peak_tflops(jax.devices()[0].device_kind, dtype)
    mfu = None if peak is None else tflops / peak
    bf16_peak = peak_tflops(jax.devices()[0].device_kind, "bfloat16")
    mfu_bf16 = None if bf16_peak is None else tflops / bf16_peak
  return Result(config=name, mode="inference" if inference else "train", size=size, batch=batch,
                dtype=dtype, compile_s=compile_s, first_call_s=first, step_s=step_s,
                step_s_min=float(min(times)),
                images_per_sec=batch / step_s, gflop_per_image=flops / batch / 1e9,
                tflops=tflops, mfu=mfu, mfu_bf16_peak=mfu_bf16)


def environment() -> dict[str, Any]:
  """What every row is measured on."""
  device = jax.devices()[0]
  return {"device_kind": device.device_kind, "platform": device.platform,
          "device_count": jax.device_count(), "jax_version": jax.__version__,
          "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "git_commit": git_commit()}


def pairs(sizes: Sequence[int], batch_sizes: Sequence[int]) -> list[tuple[int, int]]:
  if len(batch_sizes) == 1:
    return [(s, batch_sizes[0]) for s in sizes]
  if len(batch_sizes) != len(sizes):
    raise ValueError(f"--batch_sizes needs one value or one per size; got {len(batch_sizes)} "
                     f"for {len(sizes)} sizes")
  return list(zip(sizes, batch_sizes))


def format_row(result: Result) -> str:
  gpu = "" if result.tflops is None else f" {result.tflops:8.1f}"
  if result.mfu is not None:
    gpu += f" {100 * result.mfu:5.1f}% {100 * result.mfu_bf16_peak:8.1f}%"
  return (f"{result.config:16s} {result.mode:9s} {result.size:4d} {result.batch:5d} "
          f"{result.dtype:8s} {result.compile_s:9.1f} {result.step_s:9.3f} "
          f"{result.images_per_sec:9.2f} {result.gflop_per_image:9.2f}{gpu}")


HEADER = (f"{'config':16s} {'mode':9s} {'size':>4s} {'batch':>5s} {'dtype':8s} "
          f"{'compile_s':>9s} {'step_s':>9s} {'images/s':>9s} {'GFLOP/img':>9s}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  env = environment()
  print(f"# {env['device_count']} x {env['device_kind']}, JAX {env['jax_version']}, "
        f"XLA_FLAGS={env['xla_flags']!r}, load average {os.getloadavg()[0]:.2f}")
  print(HEADER + ("  TFLOP/s    MFU MFU(bf16)" if env["platform"] == "gpu" else ""))
  for name in FLAGS.configs:
    for size, batch in pairs([int(s) for s in FLAGS.sizes], [int(b) for b in FLAGS.batch_sizes]):
      load_before = os.getloadavg()[0]
      result = measure(name, size, batch, FLAGS.dtype, FLAGS.steps, FLAGS.inference,
                       FLAGS.override)
      print(format_row(result), flush=True)
      if FLAGS.out:
        record = {**env, **dataclasses.asdict(result), "steps": FLAGS.steps,
                  "overrides": list(FLAGS.override),
                  "load_average": [load_before, os.getloadavg()[0]],
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds")}
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "a") as f:
          f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  app.run(main)
