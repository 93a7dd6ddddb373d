"""Training and evaluation loop: one jitted step over a mesh of all devices.

Reads top to bottom: setup, mesh, input, models, state, step, evaluators, restore, loop. The
evaluators of `config.evals` (colorjax/evals/) run on their own cadences and at the last step;
`evaluate_checkpoint` (--mode=eval) restores a checkpoint and runs all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any, Iterator

from absl import logging
from flax import traverse_util
import jax
import ml_collections
import numpy as np

from colorjax.core import checkpointing
from colorjax.core import console
from colorjax.core import distributed
from colorjax.core import files
from colorjax.core import summaries  # TensorBoard files without TF (clu's writers import it).
from colorjax.core import workdir_lock
from colorjax.data import pipeline
from colorjax.evals import common as eval_common
from colorjax.training import builders
from colorjax.training import optim
from colorjax.training import steps


class NonFiniteLossError(FloatingPointError):
  """A loss or gradient norm became NaN or Inf; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------
# Logging helpers.
# ------------------------------------------------------------------------------------------
def summarize_metrics(history: list[dict[str, Any]], first_step: int) -> dict[str, float]:
  """Means over the logging window; raises naming the first step and term that is not finite."""
  host = jax.device_get(history)
  for offset, metrics in enumerate(host):
    bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
    if bad:
      raise NonFiniteLossError(
          f"non-finite {', '.join(bad)} at step {first_step + offset + 1}; stopping. The last "
          "good checkpoint is kept: lower the learning rate or check the data, then restart.")
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


class _StopRequest:
  """SIGTERM / SIGINT ask the loop to finish its step, checkpoint and exit cleanly.

  One process: a Python handler records the signal. Several processes must stop at the same
  step, or those that go on wait forever in a collective; a signal reaches each process at a
  different step, if at all. So there JAX's preemption service (started by
  `jax.distributed.initialize`) keeps SIGTERM: it tells every process and agrees on a step
  (`manager.reached_preemption`). SIGINT is handed on to it as SIGTERM.
  """

  def __init__(self, multi_process: bool):
    self.signal_name = None
    self._multi_process = multi_process
    self._previous = {}

  def __enter__(self):
    if self._multi_process:
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._forward)
    else:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name

  def _forward(self, signum, frame):
    self._handle(signum, frame)
    os.kill(os.getpid(), signal.SIGTERM)

  def should_stop(self, manager: Any, step: int) -> bool:
    """Whether to checkpoint and stop after `step`: the same answer in every process."""
    if self._multi_process:
      return manager.reached_preemption(step)
    return self.signal_name is not None or manager.reached_preemption(step)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@contextlib.contextmanager
def _saves_finished(manager: Any, abstract_state: Any) -> Iterator[None]:
  """Waits for in-flight async saves when the loop ends, by an error too (a non-finite loss):
  the last good checkpoint is then complete, not a temporary directory, when the error surfaces.
  """
  try:
    yield
  finally:
    checkpointing.wait_until_finished(manager, abstract_state)  # A full disk: DiskFullError.


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """{"model.generator": "unet", ...}: every config leaf under its dotted key."""
  return traverse_util.flatten_dict(config.to_dict(), sep=".")


def _write_config_json(config: ml_collections.ConfigDict, workdir: str) -> None:
  """`<workdir>/config.json`: with the checkpoints, all colorize and export need to rebuild."""
  files.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))


# ------------------------------------------------------------------------------------------
# Training.
# ------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> steps.TrainState:
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates on schedule.

  Holds `<workdir>/train.lock` throughout: a second trainer on the workdir fails at once.
  """
  builders.validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.hold(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> steps.TrainState:
  # --- Setup.
  builders.validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    _write_config_json(config, workdir)
  # --- Mesh: every device of every process on one `data` axis.
  mesh = distributed.make_data_mesh()
  replicated, batch_sharding = builders.shardings(mesh)
  logging.info("mesh %s over %d devices in %d processes", mesh.shape, jax.device_count(),
               jax.process_count())

  # --- Input: this process's share of the global batch: uint8 RGB (and labels if used).
  train_iter = iter(pipeline.create_train_dataset(config))

  # --- Models and the static parts of the step.
  parts = builders.make_step_parts(config, builders.load_prior(config, workdir))

  # --- State (born sharded) and the jitted step.
  _, abstract_state, state_shardings = builders.create_state(config, parts, mesh)
  train_step = builders.make_train_step(config, parts, mesh)

  # --- Evaluators of config.evals, each with its own jitted step (compiled at its first run).
  evaluators = eval_common.build(config, parts, mesh, workdir)

  # --- Restore: always resume from the workdir first.
  manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep)
  if manager.latest_step() is not None:
    abstract = checkpointing.abstract_with_shardings(abstract_state, state_shardings)
    # Damaged newest steps are skipped (and moved to checkpoints_damaged/) with a warning.
    state, _ = checkpointing.restore_newest_loadable(manager, abstract, train_iter,
                                                     move_damaged=True)
    logging.info("resumed from step %d in %s", int(state.step), workdir)
  else:
    state = builders.init_state(config, parts, mesh)
  first_step = int(state.step)

  # --- Loop.
  g_schedule, d_schedule = optim.make_schedules(config)
  writer = summaries.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flat_hparams(config))
  report_progress = summaries.ReportProgress(num_train_steps=config.num_train_steps,
                                                    writer=writer, every_secs=30)
  history, window_start, window_time = [], first_step, time.perf_counter()
  input_wait = 0.0  # Seconds of the logging window spent waiting for batches.
  step = first_step
  with _StopRequest(jax.process_count() > 1) as stop, _saves_finished(manager, abstract_state), \
       summaries.closing(writer), \
       console.TrainProgress(first_step, config.num_train_steps, config.batch_size,
                             enabled=jax.process_index() == 0) as progress:
    while step < config.num_train_steps:
      fetch_start = time.perf_counter()
      batch = pipeline.to_global_batch(next(train_iter), batch_sharding)
      input_wait += time.perf_counter() - fetch_start
      state, metrics = train_step(state, batch)
      if history:  # One step in flight, no more: the wait above is then input the step lacked,
        jax.block_until_ready(history[-1])  # not the host running ahead of the device.
      step += 1
      history.append(metrics)
      report_progress(step, time.time())
      progress.step_done(step, metrics)  # The console line; TensorBoard gets the scalars below.

      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        summary = summarize_metrics(history, window_start)
        elapsed = time.perf_counter() - window_time
        summary["images_per_sec"] = len(history) * config.batch_size / elapsed
        summary["input_wait_share"] = min(1.0, input_wait / elapsed)
        summary["g_learning_rate"] = float(g_schedule(step - 1))
        if parts.discriminator is not None:
          summary["d_learning_rate"] = float(d_schedule(step - 1))
        writer.write_scalars(step, summary)
        progress.losses(summary)
        history, window_start, window_time = [], step, time.perf_counter()
        input_wait = 0.0

      stop_now = stop.should_stop(manager, step)
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or stop_now:
        if history:  # Never checkpoint a state whose losses were not checked.
          summarize_metrics(history, window_start)
        checkpointing.save(manager, step, state, train_iter)
      # A stopping run skips eval: the grace period before SIGKILL is for the checkpoint.
      # A run always ends with every evaluator (samples and an eval).
      due = [] if stop_now else eval_common.due(evaluators, step,
                                                last=step == config.num_train_steps)
      if due:
        eval_start = time.perf_counter()
        progress.evaluated(step, eval_common.run(due, state, step, config=config,
                                                 workdir=workdir, writer=writer))
        window_time += time.perf_counter() - eval_start  # images/s counts training only.
      if stop_now:
        # Say "saved" only once the checkpoint is complete.
        checkpointing.wait_until_finished(manager, abstract_state)
        logging.warning("%s received: saved a checkpoint at step %d in %s; rerun the same "
                        "command to resume", stop.signal_name or "SIGTERM (preemption)", step,
                        workdir)
        break
  manager.wait_until_finished()
  manager.close()
  return state


# ------------------------------------------------------------------------------------------
# Evaluation: the evaluators of `config.evals` (colorjax/evals/common.py).
# ------------------------------------------------------------------------------------------
def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """--mode=eval: restores `config.eval.step` (or the latest) and runs every evaluator of
  `config.evals` on it; returns their scalars."""
  builders.validate_config(config)
  mesh = distributed.make_data_mesh()
  parts = builders.make_step_parts(config, builders.load_prior(config, workdir))
  _, abstract_state, state_shardings = builders.create_state(config, parts, mesh)
  evaluators = eval_common.build(config, parts, mesh, workdir)  # A bad entry fails here.
  manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep, read_only=True)
  abstract = checkpointing.abstract_with_shardings(abstract_state, state_shardings)
  try:
    # The latest step that loads (a damaged one is skipped, left in place); a given step exactly.
    state, step = checkpointing.restore_newest_loadable(
        manager, abstract, step=None if config.eval.step < 0 else config.eval.step)
  except checkpointing.NoUsableCheckpointError as e:
    raise checkpointing.NoUsableCheckpointError(f"{e}; train first with --mode=train") from None
  writer = summaries.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  with summaries.closing(writer):  # Every evaluator's output on disk, the files closed.
    return eval_common.run(evaluators, state, step, config=config, workdir=workdir,
                           writer=writer)
