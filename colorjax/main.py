"""Train or evaluate a colorization model.

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan [--mode=eval]

Configs (one per method, see docs/training.md "Configs"): {configs}.
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

import difflib
import faulthandler
import os
import shutil
import sys
import time
from typing import Sequence

from absl import flags
from absl import logging
import ml_collections

from colorjax.core import cli
from colorjax.core import config_files
from colorjax.core import console
from colorjax.core import errors

# The trainer's modules (JAX, Flax, Orbax, grain) load in `_run`, after the flags and the config
# are checked: `--help`, `--print_config` and a mistyped key answer in a fraction of the 3-5 s
# those imports take, and `console.quiet_libraries` must run before TensorFlow loads.


def _config_names() -> str:
  return ", ".join(f"configs/{n}.py" for n in config_files.names()) or "configs/*.py"


COMMAND = cli.Command("python -m colorjax.main", __doc__.format(configs=_config_names()),
                      epilog="--config.KEY=VALUE (or --config.KEY VALUE) overrides any key of "
                             "the config; --print_config lists them.")
_FLAGS = COMMAND.flags
flags.DEFINE_string("config", None, "Config file and optional variant: "
                    "configs/<method>.py[:cifar|:quick|:tiny]. Override keys with "
                    "--config.KEY=VALUE (a mistyped key is an error).", flag_values=_FLAGS)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, event files, samples and eval "
                    "(created if missing; rerun with the same one to resume). Required unless "
                    "--print_config.", flag_values=_FLAGS)
flags.DEFINE_enum("mode", "train", ["train", "eval", "prior"],
                  "train (resuming from the workdir's checkpoints), eval (scores the latest "
                  "checkpoint, or --config.eval.step=N, into <workdir>/eval/) or prior (only "
                  "computes the colour prior of the training data into the workdir, or "
                  "--config.color.prior_path; training does it on first use).",
                  flag_values=_FLAGS)
flags.DEFINE_bool("print_config", False, "Print the resolved config (every key and value, "
                  "overrides applied) and exit.", flag_values=_FLAGS)
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 for multi-process runs (else JAX_COORDINATOR_ADDRESS; "
                    "SLURM is detected). See launch/README.md.", flag_values=_FLAGS)
flags.DEFINE_integer("num_processes", None, "Number of processes (else JAX_NUM_PROCESSES).",
                     flag_values=_FLAGS)
flags.DEFINE_integer("process_id", None, "This process's index (else JAX_PROCESS_ID).",
                     flag_values=_FLAGS)
flags.DEFINE_integer("verbosity", None, "Log level of colorjax and the libraries (Orbax, absl): "
                     "0 INFO, 1 DEBUG; unset: warnings only, the console lines alone.",
                     short_name="v", flag_values=_FLAGS)


# ------------------------------------------------------------------------------------------
# The command line: flags, the config file and its overrides, every mistake as one line.
# ------------------------------------------------------------------------------------------
_OVERRIDE = "--config."


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """(the other arguments, [(KEY, VALUE)] of --config.KEY=VALUE or --config.KEY VALUE)."""
  rest, overrides = [], []
  args = iter(argv)
  for arg in args:
    if not arg.startswith(_OVERRIDE):
      rest.append(arg)
      continue
    key, sep, value = arg[len(_OVERRIDE):].partition("=")
    if not sep:
      value = next(args, None)
      if value is None or value.startswith("--"):
        raise errors.UserError(f"{arg} needs a value: {arg}=VALUE")
    overrides.append((key, value))
  return rest, overrides


def _load_config(spec: str) -> ml_collections.ConfigDict:
  """The locked config of `configs/<name>.py[:variant]`; a missing file, an unknown variant or
  a file that fails to load is a UserError."""
  path = spec.partition(":")[0]
  if not os.path.isfile(path):
    raise errors.UserError(f"config file {path} not found; choose one of {_config_names()} "
                           "(with an optional :cifar, :quick or :tiny)")
  try:
    return config_files.load(spec, locked=True)
  except ValueError as e:
    if "unknown config variant" in str(e):
      raise errors.UserError(str(e)) from None
    raise errors.UserError(f"the config file failed to load: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise errors.UserError(f"the config file failed to load: {type(e).__name__}: {e}") from None


def _missing_key(config: ml_collections.ConfigDict, key: str) -> str | None:
  """None if `key` (dotted) names a key of `config` (or a new one inside a `*_kwargs` dict,
  which the models take as they come); else the error, with the closest key if one is close."""
  node, parts = config, key.split(".")
  for depth, part in enumerate(parts):
    if isinstance(node, ml_collections.ConfigDict) and part in node:
      node = node[part]
      continue
    if depth > 0 and parts[depth - 1].endswith("_kwargs") and depth == len(parts) - 1:
      return None
    siblings = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    close = difflib.get_close_matches(part, siblings, n=1)
    hint = f"; did you mean {'.'.join(parts[:depth] + close)}?" if close else ""
    return (f"{_OVERRIDE}{key}: no such config key{hint} (--print_config lists every key and "
            "its value)")
  return None


def apply_config_overrides(config: ml_collections.ConfigDict,
                           overrides: Sequence[tuple[str, str]]) -> None:
  """Sets each (KEY, VALUE) in `config`, the value read as the key's type; UserError else."""
  for key, value in overrides:
    message = _missing_key(config, key)
    if message:
      raise errors.UserError(message)
    try:
      config_files.apply_overrides(config, [f"{key}={value}"])
    except (ValueError, TypeError, SyntaxError) as e:
      raise errors.UserError(f"{_OVERRIDE}{key}={value}: {errors.one_line(str(e))}") from None


def parse_args(argv: Sequence[str]) -> cli.Args:
  """The flags, with `config` the loaded ConfigDict (overrides applied, locked) or None."""
  rest, overrides = _split_overrides(argv)
  args = COMMAND.parse(rest)
  if args.config is None:
    if overrides:
      raise errors.UserError(f"{_OVERRIDE}{overrides[0][0]} needs --config=FILE")
    return args
  args.config = _load_config(args.config)
  apply_config_overrides(args.config, overrides)
  return args


# ------------------------------------------------------------------------------------------
# The run.
# ------------------------------------------------------------------------------------------
def _remove_if_made(workdir: str, existed: bool) -> None:
  """A start that failed before its first checkpoint leaves no workdir that looks like a run."""
  from colorjax import preflight  # pylint: disable=g-import-not-at-top
  if not existed and os.path.isdir(workdir) and not preflight.checkpoint_steps(workdir):
    shutil.rmtree(workdir, ignore_errors=True)


def _run(args: cli.Args) -> int:
  config = args.config
  if config is None:
    return errors.report("--config is required, e.g. --config=configs/lsgan.py (--help lists "
                         "the configs)")
  if args.print_config:
    print(config)
    return 0
  if not args.workdir:
    return errors.report("--workdir is required, e.g. --workdir=runs/lsgan")
  cli.use_absl_logging(args.verbosity)
  faulthandler.enable()  # A crash or a hang's stacks, as absl's app.run gives.
  # Without --verbosity only the libraries' warnings and errors reach the console (Orbax logs
  # ~60 INFO lines per checkpoint); before TensorFlow can load.
  console.quiet_libraries(verbose=args.verbosity is not None)
  # pylint: disable=g-import-not-at-top
  from colorjax.core import distributed
  try:
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
  except ValueError as e:  # A missing process count or id, a bad timeout variable.
    return errors.report(e)
  import jax
  from colorjax import preflight, train
  from colorjax.core import checkpointing, workdir_lock
  from colorjax.training import prior
  # pylint: enable=g-import-not-at-top
  logging.info("JAX process %d of %d; local devices %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  workdir = os.path.expanduser(args.workdir)
  existed = os.path.exists(workdir)
  start = time.perf_counter()
  try:
    if args.mode == "train":
      # Before the workdir is made or anything compiles; the run's setup, built once.
      setup = preflight.check(config, workdir)
      train.train_and_evaluate(config, workdir, setup)
      if jax.process_index() == 0:
        print(console.run_summary(workdir, time.perf_counter() - start), file=sys.stderr)
    elif args.mode == "prior":
      print(prior.write_prior(config, workdir), file=sys.stderr)
    else:
      setup = preflight.check_eval(config, workdir)
      train.evaluate_checkpoint(config, workdir, setup)
      latest = os.path.join(workdir, "eval", "latest.json")
      print(f"eval written to {latest}{console.eval_headline(latest)}", file=sys.stderr)
  except errors.UserError as e:
    if args.verbosity is not None:
      logging.exception("user error")  # Asked-for detail: the traceback too.
    return errors.report(e)
  except (checkpointing.CheckpointError, workdir_lock.WorkdirLockedError) as e:
    # Operator faults (damaged or mismatched checkpoints, a full disk, a busy workdir): the
    # message says it all; a traceback would bury it.
    return errors.report(e, code=1)
  finally:
    if args.mode == "train" and jax.process_index() == 0:
      _remove_if_made(workdir, existed)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.main` with `argv` (default: sys.argv[1:]); returns the exit code."""
  return COMMAND.run(_run, argv, parse=parse_args)


if __name__ == "__main__":
  sys.exit(main())
