"""Training and evaluation loop: one jitted step over a mesh of all devices.

Reads top to bottom: setup (the run's `RunSetup`: config validated, mesh, parts and abstract
state, built once), input, state, step, evaluators, restore, loop. The evaluators of
`config.evals` (colorjax/evals/) run on their own cadences and at the last step;
`evaluate_checkpoint` (--mode=eval) restores a checkpoint and runs all of them. This module is
where training and evaluation meet: the evaluators receive the generator as a function
(`evals.base.Predictor`) and its variables, nothing of the trainer's.
"""

from __future__ import annotations

import contextlib
import functools
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
from colorjax.core import files
from colorjax.core import summaries  # TensorBoard files without TF (clu's writers import it).
from colorjax.core import workdir_lock
from colorjax.data import pipeline
from colorjax.evals import base as eval_base
from colorjax.evals import common as eval_common
from colorjax.training import optim
from colorjax.training import run_setup
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


class _LogWindow:
  """The steps since the last log line: their metrics (device arrays, checked and averaged
  when the window closes), its wall time less evaluation, and the time spent waiting for input."""

  def __init__(self, first_step: int):
    self._open(first_step)

  def _open(self, first_step: int) -> None:
    self.history: list[dict[str, Any]] = []
    self.first_step, self.start, self.input_wait = first_step, time.perf_counter(), 0.0

  def check(self) -> dict[str, float]:
    """The window's means; NonFiniteLossError names the first step and term not finite."""
    return summarize_metrics(self.history, self.first_step)

  def close(self, step: int, batch_size: int) -> dict[str, float]:
    """The means with the throughput and input-wait share; a new window opens at `step`."""
    summary = self.check()
    elapsed = time.perf_counter() - self.start
    summary["images_per_sec"] = len(self.history) * batch_size / elapsed
    summary["input_wait_share"] = min(1.0, self.input_wait / elapsed)
    self._open(step)
    return summary

  def exclude(self, seconds: float) -> None:
    """Leaves `seconds` (an evaluation) out: images/s counts training only."""
    self.start += seconds


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


def predictor(parts: steps.StepParts) -> eval_base.Predictor:
  """The generator as the evaluators take it: `steps.predict_ab` on these parts."""
  return eval_base.Predictor(predict=functools.partial(steps.predict_ab, parts),
                             takes_hints=parts.hints is not None,
                             pixel_weights=parts.pixel_weights)


def _with_prior(config: ml_collections.ConfigDict, workdir: str,
                setup: run_setup.RunSetup | None) -> run_setup.RunSetup:
  """The run's setup (built here unless the caller, main.py's preflight, built it) with the
  colour prior of the training data, computed once into the workdir."""
  setup = run_setup.RunSetup.create(config) if setup is None else setup
  return setup.with_prior(run_setup.load_prior(config, workdir))


# ------------------------------------------------------------------------------------------
# Training.
# ------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       setup: run_setup.RunSetup | None = None) -> steps.TrainState:
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates on schedule.

  `setup`: the config's `RunSetup` when the caller has built it (main.py's preflight), else
  built here. Holds `<workdir>/train.lock` throughout: a second trainer on the workdir fails at
  once.
  """
  setup = run_setup.RunSetup.create(config) if setup is None else setup
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.hold(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir, setup)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        setup: run_setup.RunSetup) -> steps.TrainState:
  # --- Setup: the config's parts and abstract state, with the colour prior of the data.
  if jax.process_index() == 0:
    _write_config_json(config, workdir)
  setup = _with_prior(config, workdir, setup)
  parts, abstract_state = setup.parts, setup.abstract_state
  logging.info("mesh %s over %d devices in %d processes", setup.mesh.shape, jax.device_count(),
               jax.process_count())

  # --- Input: this process's share of the global batch: uint8 RGB (and labels if used).
  train_iter = iter(pipeline.create_train_dataset(config))

  # --- The jitted step, and the evaluators of config.evals on the generator's predict function
  # (each with its own jitted steps, compiled at its first run).
  train_step = setup.train_step()
  evaluators = eval_common.build(config, predictor(parts), setup.mesh, workdir)

  # --- State: resumed from the workdir's checkpoints, else born sharded from the seed.
  manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep)
  if manager.latest_step() is not None:
    abstract = checkpointing.abstract_with_shardings(abstract_state, setup.state_shardings)
    # Damaged newest steps are skipped (and moved to checkpoints_damaged/) with a warning.
    state, _ = checkpointing.restore_newest_loadable(manager, abstract, train_iter,
                                                     move_damaged=True)
    logging.info("resumed from step %d in %s", int(state.step), workdir)
  else:
    state = setup.init_state()
  first_step = int(state.step)

  # --- Loop.
  g_schedule, d_schedule = optim.make_schedules(config)
  writer = summaries.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flat_hparams(config))
  report_progress = summaries.ReportProgress(num_train_steps=config.num_train_steps,
                                             writer=writer, every_secs=30)
  window, step = _LogWindow(first_step), first_step
  with _StopRequest(jax.process_count() > 1) as stop, _saves_finished(manager, abstract_state), \
       summaries.closing(writer), \
       console.TrainProgress(first_step, config.num_train_steps, config.batch_size,
                             enabled=jax.process_index() == 0) as progress:
    while step < config.num_train_steps:
      fetch_start = time.perf_counter()
      batch = pipeline.to_global_batch(next(train_iter), setup.batch_sharding)
      window.input_wait += time.perf_counter() - fetch_start
      state, metrics = train_step(state, batch)
      if window.history:  # One step in flight, no more: the wait above is then input the step
        jax.block_until_ready(window.history[-1])  # lacked, not the host running ahead.
      step += 1
      window.history.append(metrics)
      report_progress(step, time.time())
      progress.step_done(step, metrics)  # The console line; TensorBoard gets the scalars below.

      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        summary = window.close(step, config.batch_size)
        summary["g_learning_rate"] = float(g_schedule(step - 1))
        if parts.discriminator is not None:
          summary["d_learning_rate"] = float(d_schedule(step - 1))
        writer.write_scalars(step, summary)
        progress.losses(summary)

      stop_now = stop.should_stop(manager, step)
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or stop_now:
        if window.history:  # Never checkpoint a state whose losses were not checked.
          window.check()
        checkpointing.save(manager, step, state, train_iter)
      # A stopping run skips eval: the grace period before SIGKILL is for the checkpoint.
      # A run always ends with every evaluator (samples and an eval).
      due = [] if stop_now else eval_common.due(evaluators, step,
                                                last=step == config.num_train_steps)
      if due:
        eval_start = time.perf_counter()
        progress.evaluated(step, eval_common.run(due, steps.eval_variables(state), step,
                                                 config=config, workdir=workdir, writer=writer))
        window.exclude(time.perf_counter() - eval_start)
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
def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        setup: run_setup.RunSetup | None = None) -> dict[str, float]:
  """--mode=eval: restores `config.eval.step` (or the latest) and runs every evaluator of
  `config.evals` on it; returns their scalars. `setup` as for `train_and_evaluate`."""
  setup = _with_prior(config, workdir, setup)
  evaluators = eval_common.build(config, predictor(setup.parts), setup.mesh,
                                 workdir)  # A bad entry fails here.
  manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep, read_only=True)
  abstract = checkpointing.abstract_with_shardings(setup.abstract_state, setup.state_shardings)
  try:
    # The latest step that loads (a damaged one is skipped, left in place); a given step exactly.
    state, step = checkpointing.restore_newest_loadable(
        manager, abstract, step=None if config.eval.step < 0 else config.eval.step)
  except checkpointing.NoUsableCheckpointError as e:
    raise checkpointing.NoUsableCheckpointError(f"{e}; train first with --mode=train") from None
  writer = summaries.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  with summaries.closing(writer):  # Every evaluator's output on disk, the files closed.
    return eval_common.run(evaluators, steps.eval_variables(state), step, config=config,
                           workdir=workdir, writer=writer)
