"""Training and evaluation loop: one jitted step over a mesh of all devices.

Reads top to bottom: setup, mesh, input, models, state, step, restore, loop. Evaluation
(`evaluate`) restores the same state and scores the eval split.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import time
from typing import Any, Iterator

from absl import logging
from flax import traverse_util
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
import jax.numpy as jnp
import ml_collections
import numpy as np

from colorjax.color import lab
from colorjax.core import checkpointing
from colorjax.core import console
from colorjax.core import distributed
from colorjax.core import files
from colorjax.core import summaries  # TensorBoard files without TF (clu's writers import it).
from colorjax.core import workdir_lock
from colorjax.data import pipeline
from colorjax.evals import frechet
from colorjax.evals import inception
from colorjax.evals import visualize
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
  writer = summaries.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flat_hparams(config))

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
  report_progress = summaries.ReportProgress(num_train_steps=config.num_train_steps,
                                                    writer=writer, every_secs=30)
  history, window_start, window_time = [], first_step, time.perf_counter()
  step = first_step
  with _StopRequest(jax.process_count() > 1) as stop, _saves_finished(manager, abstract_state), \
       summaries.ensure_flushes(writer), \
       console.TrainProgress(first_step, config.num_train_steps, config.batch_size,
                             enabled=jax.process_index() == 0) as progress:
    while step < config.num_train_steps:
      batch = pipeline.to_global_batch(next(train_iter), batch_sharding)
      state, metrics = train_step(state, batch)
      step += 1
      history.append(metrics)
      report_progress(step, time.time())
      progress.step_done(step, metrics)  # The console line; TensorBoard gets the scalars below.

      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        summary = summarize_metrics(history, window_start)
        elapsed = time.perf_counter() - window_time
        summary["images_per_sec"] = len(history) * config.batch_size / elapsed
        summary["g_learning_rate"] = float(g_schedule(step - 1))
        if parts.discriminator is not None:
          summary["d_learning_rate"] = float(d_schedule(step - 1))
        writer.write_scalars(step, summary)
        progress.losses(summary)
        history, window_start, window_time = [], step, time.perf_counter()

      stop_now = stop.should_stop(manager, step)
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or stop_now:
        if history:  # Never checkpoint a state whose losses were not checked.
          summarize_metrics(history, window_start)
        checkpointing.save(manager, step, state, train_iter)
      # A stopping run skips eval: the grace period before SIGKILL is for the checkpoint.
      last = step == config.num_train_steps  # A run always ends with samples and an eval.
      if not stop_now and (step % config.sample_every_steps == 0 or
                           step % config.eval_every_steps == 0 or last):
        eval_start = time.perf_counter()
        progress.evaluated(step, evaluate(config, workdir, parts, state, mesh, writer, step,
                                          with_metrics=step % config.eval_every_steps == 0 or last))
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
# Evaluation.
# ------------------------------------------------------------------------------------------
def _eval_batches(config: ml_collections.ConfigDict,
                  sharding: NamedSharding) -> tuple[Iterator[tuple[jax.Array, jax.Array]], int]:
  """(global (images, mask) batches, number of images); every process yields the same number
  of batches."""
  dataset, num_images = pipeline.create_eval_dataset(config)
  local_size = pipeline.local_batch_size(config.eval.batch_size)
  per_process = math.ceil(num_images / jax.process_count())
  num_batches = math.ceil(per_process / local_size)
  size = config.data.image_size
  empty = {"image": np.zeros((0, size, size, 3), np.uint8)}

  def batches():
    local = iter(dataset)
    for _ in range(num_batches):
      images, mask = pipeline.pad_batch(next(local, empty)["image"], local_size)
      yield (pipeline.to_global_batch(images, sharding),
             pipeline.to_global_batch(mask, sharding))
  return batches(), num_images


_EVAL_STEPS: dict[tuple[int, Any], tuple[steps.StepParts, Any]] = {}


def _jitted_eval_step(parts: steps.StepParts, batch_sharding: NamedSharding):
  """One jitted eval step per (parts, sharding), so evals during training compile once."""
  key = (id(parts), batch_sharding)
  if key not in _EVAL_STEPS:
    _EVAL_STEPS[key] = (parts, jax.jit(functools.partial(steps.eval_step, parts),
                                       out_shardings=(batch_sharding,) * 3))
  return _EVAL_STEPS[key][1]


def evaluate(config: ml_collections.ConfigDict, workdir: str, parts: steps.StepParts,
             state: steps.TrainState, mesh: jax.sharding.Mesh,
             writer: summaries.MetricWriter, step: int,
             with_metrics: bool = True) -> dict[str, float]:
  """Scores the eval split (averaged generator, raw generator and gray baseline), writes JSON,
  scalars and a sample grid of images drawn evenly from across the split."""
  _, batch_sharding = builders.shardings(mesh)
  eval_step = _jitted_eval_step(parts, batch_sharding)
  sums, count = {}, 0
  fid_scores = FidScores(config.eval.fid_weights) if with_metrics and config.eval.fid_weights \
      else None
  batches, num_images = _eval_batches(config, batch_sharding)
  samples = _SampleRows(num_images, config.eval.num_samples)
  for images, mask in batches:
    per_image, ema_rgb, raw_rgb = eval_step(state, images)
    host_mask = multihost_utils.process_allgather(mask, tiled=True)
    if samples.wanted_in(int(host_mask.sum())):  # Images cross to the host only for the grid.
      samples.add(*multihost_utils.process_allgather((images, ema_rgb, raw_rgb), tiled=True),
                  host_mask)
    else:
      samples.skip(int(host_mask.sum()))
    if not with_metrics:
      continue
    per_image, mask = multihost_utils.process_allgather(per_image, tiled=True), host_mask
    for key, values in per_image.items():
      sums[key] = sums.get(key, 0.0) + float(np.sum(values[mask], dtype=np.float64))
    count += int(mask.sum())
    if fid_scores is not None:
      fid_scores.update(*multihost_utils.process_allgather((images, ema_rgb), tiled=True), mask)
  if jax.process_index() == 0 and samples.rows:
    grid = samples.grid(scale=max(1, 128 // config.data.image_size))
    visualize.save_png(os.path.join(workdir, "samples", f"step_{step:08d}.png"), grid)
    writer.write_images(step, {"samples/gray_averaged_raw_truth": grid[None]})
  if not with_metrics:
    return {}
  results = {k: v / max(count, 1) for k, v in sorted(sums.items())}
  if fid_scores is not None:
    results.update(fid_scores.results())
  writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
  if jax.process_index() == 0:
    _write_eval_json(workdir, step, count, config, results)
  logging.info("eval at step %d over %d images: %s", step, count,
               ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
  return results


class _SampleRows:
  """Picks `num` images evenly spaced over an eval pass of `total` images (sorted folders and
  TFDS splits often group by class: the first rows alone would all be airplanes)."""

  def __init__(self, total: int, num: int):
    self._wanted = set(np.unique(np.linspace(0, max(total - 1, 0), min(num, total))
                                 .round().astype(int)).tolist())
    self._seen = 0
    self.rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

  def add(self, images: np.ndarray, ema_rgb: np.ndarray, raw_rgb: np.ndarray,
          mask: np.ndarray) -> None:
    images, ema_rgb, raw_rgb = (np.asarray(x)[np.asarray(mask)] for x in (images, ema_rgb,
                                                                          raw_rgb))
    for i in range(len(images)):
      if self._seen + i in self._wanted:
        self.rows.append((images[i], ema_rgb[i], raw_rgb[i]))
    self._seen += len(images)

  def wanted_in(self, count: int) -> bool:
    """Whether the next `count` real images hold a sample row."""
    return any(self._seen <= i < self._seen + count for i in self._wanted)

  def skip(self, count: int) -> None:
    self._seen += count

  def grid(self, scale: int) -> np.ndarray:
    """Labelled columns: gray input | averaged generator | raw generator | truth."""
    images = np.stack([r[0] for r in self.rows])
    columns = [np.asarray(lab.gray_rgb(images)), np.stack([r[1] for r in self.rows]),
               np.stack([r[2] for r in self.rows]), images.astype(np.float32) / 255.0]
    return visualize.sample_grid(*columns, scale=scale,
                                 labels=("gray input", "averaged G", "raw G", "truth"))


class FidScores:
  """FID of the model's and of the gray baseline's colorizations against the ground truth."""

  def __init__(self, weights_path: str):
    self._module, self._params = inception.load_inception(weights_path)
    self._features = {name: frechet.FidAccumulator() for name in ("truth", "model", "gray")}

  def update(self, images: np.ndarray, pred_rgb: np.ndarray, mask: np.ndarray) -> None:
    images = np.asarray(images)[mask]
    if not len(images):
      return
    sets = {"truth": images.astype(np.float32) / 255.0, "model": np.asarray(pred_rgb)[mask],
            "gray": np.asarray(lab.gray_rgb(images))}
    for name, rgb in sets.items():
      self._features[name].update(inception.activations(self._module, self._params, jnp.asarray(rgb)))

  def results(self) -> dict[str, float]:
    # The Cholesky form gives the same distance as pytorch-fid's sqrtm, exactly also for the
    # rank-deficient covariances of small eval sets, in a second instead of a minute.
    truth = self._features["truth"]
    return {name if name == "fid" else "gray_fid": float(frechet.fid_from_accumulators(
        self._features[key], truth, method="cholesky"))
            for name, key in (("fid", "model"), ("gray_fid", "gray"))}


def _write_eval_json(workdir: str, step: int, count: int, config: ml_collections.ConfigDict,
                     results: dict[str, float]) -> None:
  def section(prefix):
    return {k[len(prefix):]: v for k, v in results.items() if k.startswith(prefix)}
  model = {k: v for k, v in results.items() if not k.startswith(("gray_", "raw_"))}
  # "model" is the averaged generator every consumer (colorize, serve, export) loads; the raw
  # generator is reported beside it so that a poor average shows.
  record = {"step": step, "num_images": count, "dataset": config.data.name,
            "image_size": config.data.image_size, "ema_decay": config.model.ema_decay,
            "model": model, "raw_generator": section("raw_"), "gray_baseline": section("gray_")}
  for name in (f"step_{step:08d}.json", "latest.json"):
    files.write_json(os.path.join(workdir, "eval", name), record)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """--mode=eval: restores `config.eval.step` (or the latest) and evaluates it."""
  builders.validate_config(config)
  mesh = distributed.make_data_mesh()
  parts = builders.make_step_parts(config, builders.load_prior(config, workdir))
  _, abstract_state, state_shardings = builders.create_state(config, parts, mesh)
  manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep, read_only=True)
  step = manager.latest_step() if config.eval.step < 0 else config.eval.step
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f"no checkpoint {'at step ' + str(step) if step else ''} in "
                            f"{workdir}/checkpoints (have: {list(manager.all_steps())}); "
                            "train first with --mode=train")
  abstract = checkpointing.abstract_with_shardings(abstract_state, state_shardings)
  # The latest step that loads (a damaged one is skipped, left in place); a given step exactly.
  state, step = checkpointing.restore_newest_loadable(
      manager, abstract, step=None if config.eval.step < 0 else step)
  writer = summaries.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  with summaries.ensure_flushes(writer):
    return evaluate(config, workdir, parts, state, mesh, writer, step)
