#!/usr/bin/env bash
# Two JAX processes on this machine's CPU, talking over 127.0.0.1 (gloo collectives): the
# smallest real multi-process run, to try multi-host code paths without a cluster.
#
#   launch/local_cpu_2proc.sh WORKDIR [--config.KEY=V ...]
#
# Each process simulates DEVICES_PER_PROCESS CPU devices (default 2), so the mesh has
# 2 x DEVICES_PER_PROCESS devices and config.batch_size must be divisible by that. CONFIG picks
# the config file (default configs/lsgan.py). SIGTERM/SIGINT to this script go to both
# processes, which checkpoint at the same step and exit; rerun the same command to resume.
# If one process dies, the other is stopped within COLORJAX_HEARTBEAT_TIMEOUT seconds (default
# 100) and this script prints which one was lost, the last complete checkpoint and the command
# that resumes, then exits 1.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 WORKDIR [--config.KEY=V ...]" >&2
  exit 2
fi
workdir=$1
shift
config=${CONFIG:-configs/lsgan.py}
devices=${DEVICES_PER_PROCESS:-2}
# Rerunning this same command resumes; the account of a lost process quotes it.
resume=$(printf '%q ' "CONFIG=${config}" "DEVICES_PER_PROCESS=${devices}" "$0" "${workdir}" "$@")
cd "$(dirname "$0")/.."

# A port nobody listens on now (the kernel picks it; closed before process 0 binds it).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "coordinator 127.0.0.1:${port}, 2 processes x ${devices} CPU devices, workdir ${workdir}"

# colorjax.core.multiprocess starts both processes (appending --process_id), forwards
# SIGTERM/SIGINT to them and, when one is lost, prints which one and how, the last complete
# checkpoint and this command instead of the runtime's abort dump.
JAX_PLATFORMS=cpu \
XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}" \
  exec python3 -m colorjax.core.multiprocess --processes=2 --workdir="${workdir}" \
    --resume="${resume% }" -- \
    python3 -m colorjax.main --config="${config}" --workdir="${workdir}" \
      --coordinator_address="127.0.0.1:${port}" --num_processes=2 "$@"
