"""Orbax checkpoints of the train state and the grain iterator, saved together.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter}`. Orbax writes each step into a temporary
directory and renames it when complete, so a kill at any point leaves only whole checkpoints.

What can still go wrong, and what happens (docs/reliability.md):

* A complete checkpoint damaged later (a truncated file, a bad block, a partial copy):
  `restore_newest_loadable` warns in one line naming the step and the cause and falls back to
  the newest step that loads. The trainer moves damaged steps aside to
  `<workdir>/checkpoints_damaged/<step>` (never deletes them), so that Orbax no longer lists
  them and the next save does not collide with them; readers (eval, colorize, serve, export)
  leave the workdir untouched, since they may run on a read-only copy or beside a live trainer.
* A checkpoint that does not fit the model (model code or config changed after training):
  `CheckpointMismatchError` lists the missing, unexpected and reshaped keys.

Readers that need only part of the state (colorize, serve, export and compare need the
generator's averaged weights alone) pass `checkpoint_trees.Subtrees`: Orbax then reads just those
arrays, and the fit is checked on just those keys, so no optimizer or discriminator has to be
built.
* A full disk (or the file size limit) during an async save: `save` and `wait_until_finished`
  turn TensorStore's error into `DiskFullError`, naming the step and the space needed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Iterator

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

if TYPE_CHECKING:
  import grain  # Loaded where an iterator is saved or restored: readers never need it.

from colorjax.core import checkpoint_trees
from colorjax.core import diskspace

DAMAGED_DIR = "checkpoints_damaged"


class CheckpointError(RuntimeError):
  """A checkpoint problem the operator must fix; its message is one line, the whole story."""


class NoUsableCheckpointError(CheckpointError, FileNotFoundError):
  """No checkpoint step (or not the requested one) could be restored.

  Also a FileNotFoundError: for a caller, no checkpoint is a missing file like any other.
  """


class CheckpointMismatchError(CheckpointError, ValueError):
  """The checkpoint's parameter tree is not the one the current model code and config build."""


class DiskFullError(CheckpointError, diskspace.DiskFullError):
  """A checkpoint could not be written for lack of space (ENOSPC) or the file size limit."""


def make_manager(workdir: str, max_to_keep: int, *,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """The CheckpointManager of `<workdir>/checkpoints` (async saves; read-only for readers)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only, enable_async_checkpointing=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


class _IteratorSnapshot:
  """The iterator's state taken now, in the form grain's checkpoint handler writes.

  Orbax may run a sync handler's `save` on its background thread after the training loop has
  moved the iterator on; a snapshot pins the position to the saved step.
  """

  def __init__(self, data_iter: grain.DatasetIterator):
    self._state = json.dumps(data_iter.get_state(), indent=4).encode()

  def get_state(self) -> bytes:
    return self._state


# ------------------------------------------------------------------------------------------
# Saving, with a full disk turned into one clear error.
# ------------------------------------------------------------------------------------------
def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_iter: grain.DatasetIterator | None) -> None:
  """Starts an async save of the state and (a snapshot of) the data iterator's position.

  The write runs in Orbax's background threads: a write that fails for lack of space surfaces
  here at the next save (Orbax waits for the previous one first) or in `wait_until_finished`,
  both of which raise `DiskFullError` naming the step that failed.
  """
  items = {"state": ocp.args.StandardSave(state)}
  if data_iter is not None:
    # (a) grain loads only where an iterator is saved or restored (the trainer): readers
    # (Colorizer.from_workdir, eval) skip its ~75 ms.
    import grain  # pylint: disable=g-import-not-at-top
    items["data_iter"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iter))
  with _disk_errors_explained(manager, step, state):
    manager.save(step, args=ocp.args.Composite(**items))


def wait_until_finished(manager: ocp.CheckpointManager, state: Any) -> None:
  """Waits for in-flight saves; `DiskFullError` if one failed for lack of space."""
  with _disk_errors_explained(manager, None, state):
    manager.wait_until_finished()


def state_nbytes(state: Any) -> int:
  """Bytes of the arrays in `state` (arrays or ShapeDtypeStructs): what a checkpoint holds."""
  return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(state) if hasattr(leaf, "shape"))


@contextlib.contextmanager
def _disk_errors_explained(manager: ocp.CheckpointManager, step: int | None,
                           state: Any) -> Iterator[None]:
  """Re-raises a write refused for space as `DiskFullError`; other errors pass unchanged."""
  try:
    yield
  except DiskFullError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    code = diskspace.errno_of(e)
    if code is None:
      raise
    error = DiskFullError(_disk_full_message(manager, step, state, code, e))
    error.errno = code
    raise error from e


def _disk_full_message(manager: ocp.CheckpointManager, step: int | None, state: Any,
                       code: int, error: BaseException) -> str:
  directory = os.fspath(manager.directory)
  # The failed step is the one Orbax was writing: its temporary directory is in the message.
  match = re.search(r"/(\d+)\.orbax-checkpoint-tmp", str(error))
  failed = match.group(1) if match else (step if step is not None else "?")
  try:
    manager.reload()  # The failed step was never committed: list only complete ones.
    complete = list(manager.all_steps())
  except Exception:  # pylint: disable=broad-except
    complete = []
  kept = (f"the last complete checkpoint (step {max(complete)}) is intact" if complete
          else "no earlier checkpoint exists")
  return (f"checkpoint at step {failed} could not be written to {directory}: "
          f"{diskspace.reason(code)}; a checkpoint needs about "
          f"{diskspace.megabytes(state_nbytes(state))} (the train state), "
          f"{diskspace.free_space(directory)} there; {kept}. Free space (or raise the limit) "
          "and rerun the same command to resume.")


# ------------------------------------------------------------------------------------------
# Restoring: compatibility check, fallback past damaged steps.
# ------------------------------------------------------------------------------------------
def restore(manager: ocp.CheckpointManager, step: int, target: Any,
            data_iter: grain.DatasetIterator | None) -> Any:
  """The state at `step` (with the target's shardings); restores `data_iter` in place.

  `target` is the whole state's abstract tree, or `checkpoint_trees.Subtrees` (then {path:
  subtree} comes back).
  """
  if isinstance(target, checkpoint_trees.Subtrees):
    # A partial restore: Orbax reads the arrays of `item` and leaves the rest on disk.
    item = target.nested()
    state_args = ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True)
  else:
    state_args = ocp.args.StandardRestore(target)
  items = {"state": state_args}
  if data_iter is not None:
    import grain  # pylint: disable=g-import-not-at-top  (a): as in `save`.
    items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
  restored = manager.restore(step, args=ocp.args.Composite(**items)).state
  return target.pick(restored) if isinstance(target, checkpoint_trees.Subtrees) else restored


def abstract_with_shardings(abstract_state: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_state, shardings)


def saved_shapes(step_dir: str) -> dict[str, tuple[int, ...]]:
  """The flat {key: shape} of the state saved in `step_dir`, from its metadata alone."""
  metadata = ocp.StandardCheckpointHandler().metadata(epath.Path(step_dir) / "state")
  return checkpoint_trees.flat_shapes(metadata.tree)


def _one_line(error: BaseException, limit: int = 240) -> str:
  """The root cause's first line: TensorStore's messages run to pages of JSON spec."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = (str(error).strip().splitlines() or [""])[0]
  text = text.split(" [tensorstore_spec=")[0]
  text = re.sub(r' at local file "[^"]*"', "", text)  # The step is named beside it.
  text = f"{type(error).__name__}: {text}"
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _collect_abandoned_reads() -> None:
  """Silences the reads a failed restore left behind.

  Orbax abandons the other arrays' read coroutines when one fails; garbage-collected later
  (now, or at exit), each prints an "Exception ignored in: <coroutine ...>" traceback with a
  page of TensorStore spec, repeating the cause already logged in one line. From the first
  failed restore on, such reports from Orbax's own coroutines are dropped; any other
  unraisable exception is still reported.
  """
  if not getattr(sys.unraisablehook, "drops_orbax_coroutines", False):
    previous = sys.unraisablehook

    def hook(unraisable):
      code = getattr(unraisable.object, "cr_code", None)
      if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
        return
      previous(unraisable)

    hook.drops_orbax_coroutines = True
    sys.unraisablehook = hook
  gc.collect()


def _move_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves a damaged step out of the directory Orbax scans; returns where it went."""
  checkpoints = os.fspath(manager.directory)
  target_dir = os.path.join(os.path.dirname(checkpoints), DAMAGED_DIR)
  os.makedirs(target_dir, exist_ok=True)
  target, n = os.path.join(target_dir, str(step)), 1
  while os.path.exists(target):  # The same step damaged again later: keep both.
    target, n = os.path.join(target_dir, f"{step}.{n}"), n + 1
  os.rename(os.path.join(checkpoints, str(step)), target)
  return target


def restore_newest_loadable(manager: ocp.CheckpointManager, abstract_state: Any,
                            data_iter: grain.DatasetIterator | None = None, *,
                            step: int | None = None, move_damaged: bool = False
                            ) -> tuple[Any, int]:
  """(state, step) of the newest checkpoint that restores, or of `step` if one is given.

  Every reader of checkpoints comes through here: the trainer's resume, --mode=eval, colorize,
  serve, export and compare. A step that fails to restore is reported in one warning line
  (step and root cause) and the next older one is tried; a given `step` is not replaced by
  another one.

  Args:
    manager: the workdir's CheckpointManager.
    abstract_state: the state's ShapeDtypeStructs, with shardings; or
      `checkpoint_trees.Subtrees` to restore (and check) only those parts, returned as
      {path: subtree}.
    data_iter: restored in place alongside the state (trainer only).
    step: restore exactly this step (no fallback); None for the newest that loads.
    move_damaged: move steps that failed to `<workdir>/checkpoints_damaged/` once an older
      one has loaded (the trainer: its next saves must not collide with them). Nothing is moved
      when no step loads: a failure common to all steps (a bug, a missing library) must not
      empty the checkpoint directory.

  Raises:
    NoUsableCheckpointError: no checkpoint, the given step is absent, or nothing restores.
    CheckpointMismatchError: the checkpoint's tree differs from `abstract_state` (for
      `checkpoint_trees.Subtrees`: differs under one of its paths).
  """
  directory = os.fspath(manager.directory)
  available = sorted(manager.all_steps(), reverse=True)
  if step is not None and step not in available:
    raise NoUsableCheckpointError(f"no checkpoint at step {step} in {directory} "
                                  f"(have: {sorted(available)})")
  if not available:
    raise NoUsableCheckpointError(f"no checkpoint in {directory}")
  partial = isinstance(abstract_state, checkpoint_trees.Subtrees)
  expected = checkpoint_trees.flat_shapes(abstract_state.nested() if partial else abstract_state)
  damaged: list[tuple[int, str]] = []
  for candidate in [step] if step is not None else available:
    try:
      saved = saved_shapes(os.path.join(directory, str(candidate)))
      if partial:  # Only the restored parts must fit; the rest is never read.
        saved = {k: v for k, v in saved.items() if abstract_state.covers(k)}
      differences = checkpoint_trees.tree_differences(saved, expected)
    except Exception as e:  # pylint: disable=broad-except
      differences, cause = None, _one_line(e)  # Unreadable metadata: a damaged step.
    else:
      cause = None
    if differences:
      raise CheckpointMismatchError(
          f"the checkpoint at step {candidate} in {directory} does not fit the model the "
          "config builds (model code or config changed after training?): "
          + "; ".join(differences))
    if cause is None:
      try:
        state = restore(manager, candidate, abstract_state, data_iter)
      except Exception as e:  # pylint: disable=broad-except
        cause = _one_line(e)
      if cause is not None:
        _collect_abandoned_reads()
    if cause is not None:
      damaged.append((candidate, cause))
      logging.warning("checkpoint at step %d in %s cannot be restored, skipping it: %s",
                      candidate, directory, cause)
      continue
    if damaged:
      _after_fallback(manager, damaged, candidate, move_damaged)
    return state, candidate
  tried = "; ".join(f"step {s}: {cause}" for s, cause in damaged)
  raise NoUsableCheckpointError(f"no checkpoint in {directory} could be restored (tried {tried})")


def _after_fallback(manager: ocp.CheckpointManager, damaged: list[tuple[int, str]],
                    restored: int, move_damaged: bool) -> None:
  steps = ", ".join(str(s) for s, _ in damaged)
  if not move_damaged:
    logging.warning("restored step %d instead of damaged step(s) %s, which are left in place",
                    restored, steps)
    return
  if jax.process_index() == 0:  # One process moves; the others see it on the shared disk.
    for bad, _ in damaged:
      logging.warning("moved damaged checkpoint step %d to %s (kept, not deleted); resuming "
                      "from step %d", bad, _move_aside(manager, bad), restored)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("colorjax_moved_damaged_checkpoints")
  manager.reload()  # Orbax caches the step list: forget the moved steps.
