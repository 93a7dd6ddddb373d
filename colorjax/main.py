"""Train or evaluate a colorization model.

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan [--mode=eval]

Configs (one per method, see README.md "Configs"): {configs}.
Each has the variants :cifar (CIFAR-10 at 32 px), :quick (the bundled photos at 32 px, about a
minute) and :tiny (seconds, for tests), e.g. --config=configs/lsgan.py:quick. Any key can be
overridden, --config.batch_size=64 --config.data.name=~/photos; print every key and its value
with --print_config (no workdir needed):

  python -m colorjax.main --config=configs/lsgan.py:cifar --print_config

The console shows progress and where the results are; --verbosity=0 (or -v 0) adds the
libraries' INFO logs (Orbax, absl), -v 1 debug logs. Exit codes: 0 done, 1 a failure during the
run (a traceback: a bug; or one line: a damaged checkpoint, a full disk, a busy workdir), 2 a
mistake in the command (one line saying what to change; nothing is left in the workdir).
"""

import os
import re
import shutil
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from colorjax.core import config_files
from colorjax.core.errors import UserError, one_line, report


def _config_names() -> str:
  return ", ".join(f"configs/{n}.py" for n in config_files.names()) or "configs/*.py"


__doc__ = __doc__.format(configs=_config_names())  # absl prints it as the --help usage.

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, event files, samples and eval "
                    "(created if missing; rerun with the same one to resume). Required unless "
                    "--print_config.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "prior"],
                  "train (resuming from the workdir's checkpoints), eval (scores the latest "
                  "checkpoint, or --config.eval.step=N, into <workdir>/eval/) or prior (only "
                  "computes the colour prior of the training data into the workdir, or "
                  "--config.color.prior_path; training does it on first use).")
flags.DEFINE_bool("print_config", False, "Print the resolved config (every key and value, "
                  "overrides applied) and exit.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 for multi-process runs (else JAX_COORDINATOR_ADDRESS; "
                    "SLURM is detected). See launch/README.md.")
flags.DEFINE_integer("num_processes", None, "Number of processes (else JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process's index (else JAX_PROCESS_ID).")
config_flags.DEFINE_config_file(
    "config", None, "Config file and optional variant: configs/<method>.py[:cifar|:quick|:tiny]. "
    "Override keys with --config.KEY=VALUE (a mistyped key is an error).", lock_config=True)


# ------------------------------------------------------------------------------------------
# Command-line mistakes: one line, exit 2, before anything is imported or created.
# ------------------------------------------------------------------------------------------
def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _config_key_message(error: BaseException, argv: list[str]) -> str | None:
  """'--config.batch_sise=4: no such config key; did you mean batch_size?' from ml_collections'
  KeyError/AttributeError (whose text holds escaped newlines and quotes)."""
  text = " ".join(str(e).replace("\\n", " ") for e in _chain(error))
  suggestion = re.search(r'Did you mean \\?"([\w.]+)\\?"', text)
  key = re.search(r"'\\?'?(\w+)\\?'", text)  # The key as ml_collections quotes it.
  named = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  culprit = next((a for a in named if key and a.split(".")[-1] == key.group(1)), None)
  if culprit is None:
    if not suggestion:
      return None
    culprit = next((a for a in named if a.split(".")[-1] != suggestion.group(1)), "--config.?")
  hint = f"; did you mean {suggestion.group(1)}?" if suggestion else ""
  return (f"{culprit}: no such config key{hint} (--print_config lists every key and its "
          "value)")


def _config_file_message(error: BaseException) -> str:
  """The config file's own error (a missing file, an unknown variant), not absl's wrapping."""
  text = "\n".join(str(e) for e in _chain(error))
  # config_flags quotes the config module's traceback: its last "...Error: message" line.
  raised = re.findall(r"^\s*\w+Error: (.+)$", text, flags=re.M)
  if raised and "unknown config variant" in raised[-1]:
    return raised[-1]
  if raised and "Error whilst parsing config file" in text:  # The config file itself raised.
    return f"the config file failed to load: {raised[-1]}"
  missing = re.search(r"No such file or directory: '([^']+)'", text)
  if missing:
    return (f"config file {missing.group(1)} not found; choose one of {_config_names()} "
            "(with an optional :cifar, :quick or :tiny)")
  lines = [l.strip() for l in str(error).splitlines() if l.strip() and not l.startswith(" ")]
  return lines[-1] if lines else one_line(str(error))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with the config file loaded at once and every mistake as one line."""
  try:
    rest = FLAGS(argv)
    if FLAGS.config is not None:
      FLAGS.config.keys()  # A file that failed to load raises on first use: now, not mid-run.
    return rest
  except (AttributeError, KeyError) as e:  # --config.KEY that the config does not have.
    message = _config_key_message(e, argv)
    if message is None:
      raise
  except OSError as e:  # The config file could not be loaded (config_flags defers it).
    message = _config_file_message(e)
  except flags.Error as e:
    message = (_config_key_message(e, argv) if "Did you mean" in str(e) and "--config." in
               " ".join(argv) else None) or _config_file_message(e)
  sys.exit(report(message + "  (--help lists the flags)"))


# ------------------------------------------------------------------------------------------
# Console: libraries quiet unless asked for.
# ------------------------------------------------------------------------------------------
def _quiet_libraries() -> None:
  """Without --verbosity / -v, only warnings and errors of the libraries reach the console
  (Orbax logs ~60 INFO lines per checkpoint); TF's C++ INFO lines (oneDNN) are off too."""
  from colorjax.core import console  # pylint: disable=g-import-not-at-top
  # TensorFlow (only for TFDS datasets) loads after this: the flags parse first.
  console.quiet_libraries(verbose=FLAGS["verbosity"].present > 0)


def _remove_if_made(workdir: str, existed: bool) -> None:
  """A start that failed before its first checkpoint leaves no workdir that looks like a run."""
  from colorjax.training import preflight  # pylint: disable=g-import-not-at-top
  if not existed and os.path.isdir(workdir) and not preflight.checkpoint_steps(workdir):
    shutil.rmtree(workdir, ignore_errors=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  if config is None:
    sys.exit(report("--config is required, e.g. --config=configs/lsgan.py (--help lists the "
                    "configs)"))
  if FLAGS.print_config:
    print(config)
    return
  if not FLAGS.workdir:
    sys.exit(report("--workdir is required, e.g. --workdir=runs/lsgan"))
  _quiet_libraries()
  # No TensorFlow here: it is imported (and kept off the GPUs) only where a TFDS dataset is read.
  from colorjax.core import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  import jax  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from colorjax.core import checkpointing, workdir_lock  # pylint: disable=g-import-not-at-top
  from colorjax.training import preflight  # pylint: disable=g-import-not-at-top
  logging.info("JAX process %d of %d; local devices %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  workdir = os.path.expanduser(FLAGS.workdir)
  existed = os.path.exists(workdir)
  start = time.perf_counter()
  try:
    if FLAGS.mode == "train":
      preflight.check(config, workdir)  # Before the workdir is made or anything compiles.
      train.train_and_evaluate(config, workdir)
      if jax.process_index() == 0:
        from colorjax.core import console  # pylint: disable=g-import-not-at-top
        print(console.run_summary(workdir, time.perf_counter() - start), file=sys.stderr)
    elif FLAGS.mode == "prior":
      from colorjax.training import classification  # pylint: disable=g-import-not-at-top
      print(classification.write_prior(config, workdir), file=sys.stderr)
    else:
      preflight.check_eval(config, workdir)
      train.evaluate_checkpoint(config, workdir)
      from colorjax.core import console  # pylint: disable=g-import-not-at-top
      latest = os.path.join(workdir, "eval", "latest.json")
      print(f"eval written to {latest}{console.eval_headline(latest)}", file=sys.stderr)
  except UserError as e:
    if FLAGS["verbosity"].present:
      logging.exception("user error")  # Asked-for detail: the traceback too.
    sys.exit(report(e))
  except (checkpointing.CheckpointError, workdir_lock.WorkdirLockedError) as e:
    # Operator faults (damaged or mismatched checkpoints, a full disk, a busy workdir): the
    # message says it all; a traceback would bury it.
    sys.exit(report(e, code=1))
  finally:
    if FLAGS.mode == "train" and jax.process_index() == 0:
      _remove_if_made(workdir, existed)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
