#!/usr/bin/env bash
# One process driving every GPU of this machine (JAX sees them all; the mesh spans them).
#
#   launch/single_node.sh WORKDIR [--config.KEY=V ...]
#
# config.batch_size is the global batch and must divide by the number of GPUs. Pick GPUs with
# CUDA_VISIBLE_DEVICES. SIGTERM or Ctrl-C checkpoints and exits 0; rerun to resume.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 WORKDIR [--config.KEY=V ...]" >&2
  exit 2
fi
workdir=$1
shift
config=${CONFIG:-configs/lsgan.py}
cd "$(dirname "$0")/.."

exec python3 -m colorjax.main --config="${config}" --workdir="${workdir}" "$@"
