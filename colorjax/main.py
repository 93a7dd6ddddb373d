"""Entry point: `python -m colorjax.main --config=configs/lsgan.py --workdir=DIR [--mode=eval]`."""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, event files, samples and eval.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (resuming) or evaluate a checkpoint.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 for multi-process runs (else JAX_COORDINATOR_ADDRESS; "
                    "SLURM is detected). See launch/README.md.")
flags.DEFINE_integer("num_processes", None, "Number of processes (else JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process's index (else JAX_PROCESS_ID).")
config_flags.DEFINE_config_file("config", None, "Config file; override keys with --config.KEY=V.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from colorjax import distributed, tf_utils  # pylint: disable=g-import-not-at-top
  tf_utils.hide_tf_from_accelerators()  # TF (TFDS, clu) must not grab GPU memory.
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  import jax  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  logging.info("JAX process %d of %d; local devices %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  from colorjax import checkpointing, workdir_lock  # pylint: disable=g-import-not-at-top
  try:
    if FLAGS.mode == "train":
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
      train.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
  except (checkpointing.CheckpointError, workdir_lock.WorkdirLockedError) as e:
    # Operator faults (damaged or mismatched checkpoints, a full disk, a busy workdir): the
    # message says it all; a traceback would bury it.
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
