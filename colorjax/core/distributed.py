"""Multi-process start-up through JAX's own distributed runtime."""

from __future__ import annotations

import os

from absl import logging
import jax

from jax.sharding import NamedSharding, PartitionSpec as P

from colorjax.core import multiprocess


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Calls `jax.distributed.initialize()` when launched as one of several processes.

  The arguments (main.py's --coordinator_address, --num_processes, --process_id) take
  precedence over JAX's own variables (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID); without either, SLURM's (SLURM_NTASKS > 1) are detected by JAX. A single
  process runs as is. $COLORJAX_HEARTBEAT_TIMEOUT sets how long a lost process goes unnoticed,
  $COLORJAX_SHUTDOWN_TIMEOUT how long an ended one waits for the others
  (colorjax.core.multiprocess).
  """
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address:
    kwargs = {"coordinator_address": address,
              "num_processes": _int_setting(num_processes, "num_processes", "JAX_NUM_PROCESSES"),
              "process_id": _int_setting(process_id, "process_id", "JAX_PROCESS_ID"),
              **_timeouts()}
    # Cross-process collectives of the CPU backend (multi-process CPU runs, and host-side
    # arrays on GPU hosts). gloo is JAX's default today; name it so a changed default
    # cannot silently leave CPU runs without collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
  elif num_processes is not None or process_id is not None:
    raise ValueError("--num_processes/--process_id need --coordinator_address (or "
                     "JAX_COORDINATOR_ADDRESS), e.g. --coordinator_address=10.0.0.1:1234")
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    # The rest from the SLURM environment.
    jax.distributed.initialize(**_timeouts())
  else:
    return
  logging.info("distributed: process %d of %d, timeouts %s", jax.process_index(),
               jax.process_count(), _timeouts())


def _timeouts() -> dict[str, int]:
  """JAX's failure detection, from $COLORJAX_HEARTBEAT_TIMEOUT / $COLORJAX_SHUTDOWN_TIMEOUT."""
  return {"heartbeat_timeout_seconds": multiprocess.heartbeat_timeout_seconds(),
          "shutdown_timeout_seconds": multiprocess.shutdown_timeout_seconds()}


def _int_setting(value: int | None, flag: str, variable: str) -> int:
  """`value` when given, else the environment variable; fails naming both when neither is set."""
  if value is not None:
    return value
  if variable not in os.environ:
    raise ValueError(f"a multi-process run needs --{flag} or {variable} "
                     "along with the coordinator address")
  return int(os.environ[variable])


def make_data_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh of every device of every process along the `data` axis.

  Auto axis types: the compiler propagates shardings from the inputs (batch on `data`,
  parameters replicated), as with `pmap`'s data parallelism, without annotating every op.
  """
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def shardings(mesh: jax.sharding.Mesh) -> tuple[NamedSharding, NamedSharding]:
  """(replicated, batch sharded over the `data` axis) on `mesh`."""
  return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def check_batch_divides(name: str, batch_size: int) -> None:
  """ValueError unless the global batch `name`=`batch_size` splits evenly over all devices;
  the message suggests the nearest size that does."""
  devices = jax.device_count()
  if batch_size % devices:
    raise ValueError(f"{name}={batch_size} must be divisible by the number of devices "
                     f"({devices}); e.g. --config.{name}="
                     f"{max(devices, batch_size // devices * devices)}")
