"""Checks before the first step: everything that would otherwise fail minutes or hours later.

`check(config, workdir)` runs before training creates anything in the workdir: the config's
values and the batch against the device count, the image size against the model (by building
the run's `RunSetup`, whose abstract state runs the model's own shape checks), the evaluators
of `config.evals`, the train and eval splits (non-empty), labels when the classification loss
needs them, and the disk space for one checkpoint. Each failure is a `UserError` whose message
says what to change. It returns the `RunSetup`, which the trainer then takes over: the config
is validated and the state's shapes traced once per run.

It checks the trainer's and the evaluators' configuration alike, so it sits above both
(colorjax/training/, colorjax/evals/), beside colorjax/train.py.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

import ml_collections

from colorjax.core import checkpointing
from colorjax.core import diskspace
from colorjax.core.errors import UserError
from colorjax.data import pipeline
from colorjax.data import sources
from colorjax.evals import common as eval_common
from colorjax.training import run_setup


def check(config: ml_collections.ConfigDict, workdir: str) -> run_setup.RunSetup:
  """The run's setup; `UserError` on the first problem a training run in `workdir` would hit."""
  setup = check_config(config)
  train_source = check_split(config, train=True)
  check_split(config, train=False)
  check_labels(config, train_source)
  check_disk_space(workdir, setup.abstract_state)
  return setup


def check_eval(config: ml_collections.ConfigDict, workdir: str) -> run_setup.RunSetup:
  """--mode=eval: the config, the eval split and a checkpoint to evaluate; the run's setup."""
  setup = check_config(config)
  check_split(config, train=False)
  if not checkpoint_steps(workdir):
    raise UserError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}: train first "
                    f"(--mode=train with the same --workdir), or give the workdir of a run")
  return setup


def check_config(config: ml_collections.ConfigDict) -> run_setup.RunSetup:
  """The run's setup, built once: the trainer's value checks (choices, positive counts, both
  batches against the devices), the model at `data.image_size` and the evaluators' entries."""
  try:
    setup = run_setup.RunSetup.create(config)
  except (ValueError, KeyError) as e:  # The registries raise KeyError naming the valid names.
    raise UserError(str(e).strip("'\"")) from e
  # The evaluators of config.evals: known types, cadences, FID weights that exist (else found
  # missing only at the first eval).
  try:
    eval_common.check_config(config)
  except ValueError as e:
    raise UserError(str(e)) from e
  return setup


def check_split(config: ml_collections.ConfigDict, *, train: bool) -> Sequence[Any]:
  """The split's source; `UserError` if it is missing or empty, with the way to fix it."""
  which = "train" if train else "eval"
  try:
    source = sources.create_source(config.data, train=train)
  except FileNotFoundError as e:  # A missing folder or TFDS dataset: the message says how.
    raise UserError(str(e)) from e
  except ValueError as e:  # A folder whose hash split left this split empty.
    raise UserError(f"{e}: {_empty_split_fix(config, train)}") from e
  if len(source) == 0:
    raise UserError(f"the {which} split of {config.data.name!r} is empty: "
                    f"{_empty_split_fix(config, train)}")
  return source


def _empty_split_fix(config: ml_collections.ConfigDict, train: bool) -> str:
  if train:
    return ("lower --config.data.validation_percent, or name the split with "
            "--config.data.train_split")
  return ("add photos, raise --config.data.validation_percent (e.g. 50 for a handful of "
          "photos), or put the eval photos in a val/ folder beside a train/ folder")


def check_labels(config: ml_collections.ConfigDict, train_source: Sequence[Any]) -> None:
  """loss.class_weight > 0 needs labelled data with as many classes as the classifier."""
  try:
    pipeline.check_labels(train_source, config)
  except ValueError as e:
    raise UserError(str(e)) from e


def check_disk_space(workdir: str, abstract_state: Any) -> None:
  """Room for one more checkpoint (the train state's bytes) where the workdir is or will be."""
  needed = checkpointing.state_nbytes(abstract_state)
  existing = _nearest_existing(workdir)
  free = shutil.disk_usage(existing).free
  if free < needed:
    raise UserError(f"a checkpoint needs about {diskspace.megabytes(needed)} (the train state) "
                    f"and {existing} has {diskspace.megabytes(free)} free: free some space or "
                    "choose a --workdir on another disk")


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps with a committed checkpoint directory under `<workdir>/checkpoints`."""
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return []
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _nearest_existing(path: str) -> str:
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path
