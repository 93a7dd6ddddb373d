"""TensorFlow is optional: only TFDS (datasets by name, `colorjax.prepare`) and the SavedModel
export use it, from the `tf` extra (`pip install "colorjax[tf]"`; the `tfds` extra alone reads
prepared ArrayRecord datasets without TF). The core install trains,
evaluates, colorizes, serves and exports StableHLO without it (GPU hosts often have no TF).

Where TF is imported it is first kept off the accelerators, which belong to JAX.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from colorjax.core.errors import UserError

INSTALL_HINT = ('pip install "colorjax[tf]" (in a checkout: pip install -e ".[tf]"; '
                '".[dev]" has it too)')


class TensorFlowMissingError(UserError, ModuleNotFoundError):
  """A feature of the `tf` or `tfds` extra was asked for where TF (or TFDS) is not installed.
  A `UserError`: commands print its message on one line, without a traceback."""


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def import_tensorflow(purpose: str) -> ModuleType:
  """`tensorflow`, kept off the GPUs; a one-line error naming the extra if it is missing."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (b): the tf extra.
  except ImportError as e:
    raise TensorFlowMissingError(f"{purpose} needs TensorFlow, which the core install leaves "
                                 f"out: {INSTALL_HINT}") from e
  tf.config.set_visible_devices([], "GPU")
  return tf


def import_tfds(purpose: str) -> ModuleType:
  """`tensorflow_datasets` (TF, if installed, kept off the GPUs); a one-line error naming the
  extra if it is missing. Reading a prepared ArrayRecord dataset (`tfds.data_source`) needs
  TFDS but not TF (tensorflow-datasets 4.9.10): `pip install "colorjax[tfds]"` is enough."""
  hide_tf_from_accelerators()
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (b): tfds extra.
  except ImportError as e:
    raise TensorFlowMissingError(
        f"{purpose} needs TensorFlow Datasets, which the core install leaves out: "
        f'pip install "colorjax[tfds]" (reading prepared ArrayRecord data, no TF) or '
        f"{INSTALL_HINT}; image folders need neither (--config.data.name=/path/to/photos)") from e
  return tfds


def hide_tf_from_accelerators() -> None:
  """Keeps TF, if installed, off the GPUs; a no-op without TF (nothing then to keep away)."""
  if tensorflow_available():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (b): the tf extra.
    tf.config.set_visible_devices([], "GPU")
