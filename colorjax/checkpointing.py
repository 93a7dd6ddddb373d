"""Orbax checkpoints of the train state and the grain iterator, saved together.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter}`. Orbax writes each step into a temporary
directory and renames it when complete, so a kill at any point leaves only whole checkpoints.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, max_to_keep: int, *, read_only: bool = False) -> ocp.CheckpointManager:
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


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_iter: grain.DatasetIterator | None) -> None:
  """Starts an async save of the state and (a snapshot of) the data iterator's position."""
  items = {"state": ocp.args.StandardSave(state)}
  if data_iter is not None:
    items["data_iter"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iter))
  manager.save(step, args=ocp.args.Composite(**items))


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
            data_iter: grain.DatasetIterator | None) -> Any:
  """The state at `step` (with the abstract state's shardings); restores `data_iter` in place."""
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
  return manager.restore(step, args=ocp.args.Composite(**items)).state


def abstract_with_shardings(abstract_state: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_state, shardings)
