"""Multi-process start-up through JAX's own distributed runtime."""

from __future__ import annotations

import os

from absl import logging
import jax


def initialize() -> None:
  """Calls `jax.distributed.initialize()` when launched as one of several processes.

  Detected from JAX's own variables (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID) or SLURM's (SLURM_NTASKS > 1). A single process runs as is.
  """
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = {"coordinator_address": os.environ["JAX_COORDINATOR_ADDRESS"],
              "num_processes": int(os.environ["JAX_NUM_PROCESSES"]),
              "process_id": int(os.environ["JAX_PROCESS_ID"])}
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    jax.distributed.initialize()  # Reads the SLURM environment.
  else:
    return
  logging.info("distributed: process %d of %d", jax.process_index(), jax.process_count())


def make_data_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh of every device of every process along the `data` axis.

  Auto axis types: the compiler propagates shardings from the inputs (batch on `data`,
  parameters replicated), as with `pmap`'s data parallelism, without annotating every op.
  """
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
