#!/usr/bin/env bash
# The first GPU measurements of issue 16 in one command, from the repo root, on a host where
#   pip install -e ".[gpu]"        # core + jax[cuda12]; no TensorFlow needed (or ".[gpu-cuda13]")
# has run. Needs no ../shared and no TF: the train step times random uint8 batches, the input
# pipeline reads JPEG crops of scikit-image's photos it writes itself, colorize uses astronaut.
#
#   bash benchmarks/gpu_first_run.sh [check|step|pipeline|colorize|all] [log folder]
#
# Each part fits a 10-minute slot on an H100 (run them one by one where commands are capped).
# Rows of the train step go to benchmarks/results.jsonl (device kind, JAX version, commit, date,
# images/s, compile s, GFLOP per image, TFLOP/s, MFU); the other parts print Markdown tables.
# Logs: <log folder>/gpu_<part>.log (default benchmarks/gpu_logs).
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-all}"
logs="${2:-benchmarks/gpu_logs}"
mkdir -p "$logs"
export TF_CPP_MIN_LOG_LEVEL=2

check() {
  # JAX must see the GPU; say which JAX, plugin and device, and whether TF is there at all.
  python - <<'EOF'
import importlib.metadata as md, importlib.util, jax
print("jax", jax.__version__, "backend", jax.default_backend(), "devices", jax.devices())
for name in ("jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin"):
  try:
    print(name, md.version(name))
  except md.PackageNotFoundError:
    pass
print("tensorflow installed:", importlib.util.find_spec("tensorflow") is not None)
assert jax.default_backend() == "gpu", "JAX sees no GPU: install .[gpu] (jax[cuda12]) and check nvidia-smi"
EOF
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv || true
}

step() {
  # pix2pix's U-Net-256 (8 levels) + 70x70 PatchGAN train step, bf16 then fp32, at batch 32 to
  # 256 in one process per dtype (rows are appended as they finish: an out-of-memory row ends
  # that dtype's sweep and keeps the rows before it); 20 timed steps after compile. Then the
  # EMA generator's forward (inference) at batch 64.
  for dtype in bfloat16 float32; do
    timeout 280 python benchmarks/train_step.py --configs=pix2pix --sizes=256,256,256,256 \
        --batch_sizes=32,64,128,256 --dtype="$dtype" --steps=20 \
      || echo "pix2pix 256 px $dtype: the sweep ended early (out of memory or time)"
  done
  python benchmarks/train_step.py --configs=pix2pix --sizes=256 --batch_sizes=64 \
    --dtype=bfloat16 --steps=20 --inference || true
  python benchmarks/train_step.py --configs=pix2pix --sizes=256 --batch_sizes=64 \
    --dtype=float32 --steps=20 --inference || true
}

pipeline() {
  # The grain pipeline on this host's CPU cores at 256 px: 512-1024 px JPEGs decoded, cropped,
  # flipped, batched; compare with the step's images/s above (input must keep up with it).
  workers="0 4 8 $(( $(nproc) - 1 ))"
  python benchmarks/input_pipeline.py --sections per_core workers gpu --size 256 \
    --workers $workers --batch_size 64 --batches 8
}

colorize() {
  # Read + model + recombine + write per photo at 0.25, 1, 4 and 12 MP (goal: 1 MP < 50 ms).
  python benchmarks/colorize.py --repeats=5
}

case "$part" in
  check|step|pipeline|colorize) "$part" 2>&1 | tee "$logs/gpu_$part.log" ;;
  all)
    for p in check step pipeline colorize; do "$p" 2>&1 | tee "$logs/gpu_$p.log"; done ;;
  *) echo "usage: $0 [check|step|pipeline|colorize|all] [log folder]" >&2; exit 2 ;;
esac
