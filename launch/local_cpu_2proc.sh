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
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 WORKDIR [--config.KEY=V ...]" >&2
  exit 2
fi
workdir=$1
shift
config=${CONFIG:-configs/lsgan.py}
devices=${DEVICES_PER_PROCESS:-2}
cd "$(dirname "$0")/.."

# A port nobody listens on now (the kernel picks it; closed before process 0 binds it).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "coordinator 127.0.0.1:${port}, 2 processes x ${devices} CPU devices, workdir ${workdir}"

pids=()
for process_id in 0 1; do
  JAX_PLATFORMS=cpu \
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}" \
    python3 -m colorjax.main --config="${config}" --workdir="${workdir}" \
      --coordinator_address="127.0.0.1:${port}" --num_processes=2 --process_id="${process_id}" \
      "$@" &
  pids+=($!)
done

forward() { kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT

status=0
for pid in "${pids[@]}"; do
  # `wait` returns early when a trapped signal arrives; wait again until the child is gone.
  while true; do
    set +e
    wait "${pid}"
    rc=$?
    set -e
    if ! kill -0 "${pid}" 2>/dev/null; then
      break
    fi
  done
  if [[ ${rc} -ne 0 ]]; then
    status=${rc}
  fi
done
exit ${status}
