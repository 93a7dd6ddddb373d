"""TensorBoard event files and log lines without TensorFlow.

`clu.metric_writers` imports TensorFlow at package import (its SummaryWriter is tf.summary), and
`clu.periodic_actions` imports `clu.metric_writers`: with them, the trainer could not run where
TensorFlow is not installed (GPU hosts often offer only JAX). This module keeps clu's interface
(`MetricWriter`: write_scalars, write_images, write_texts, write_hparams, flush, close;
`create_default_writer`, `ReportProgress`; `closing` is clu's `ensure_flushes` that also closes)
and writes the same records that tf.summary writes, through the `tensorboard` package's own
protobufs, which need no TensorFlow:

  * scalars: a float32 scalar tensor with the "scalars" plugin metadata (tf.summary.scalar);
  * images: a string tensor [width, height, png, ...] with the "images" plugin (tf.summary.image);
  * texts: a string tensor with the "text" plugin; hparams: the hparams plugin's session summary.

Files are TFRecord framed (length, masked CRC32C of the length, data, masked CRC32C of the data)
and named `events.out.tfevents.<time>.<host>.<pid>.<n>`, so `tensorboard --logdir` and
`tf.compat.v1.train.summary_iterator` read them. `read_scalars` / `iter_events` read them back
without TensorFlow (tests, `colorjax.compare`).

`tensorboard.summary.writer.EventFileWriter` is not used: it opens its file through
`tensorboard.compat.tf`, which imports the real TensorFlow whenever it is installed (seconds of
start-up, and TF must then be kept off the GPUs).
"""

from __future__ import annotations

import abc
import contextlib
import glob
import io
import itertools
import os
import socket
import struct
import threading
import time
from typing import Any, BinaryIO, Iterator, Mapping

from absl import logging
import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.util import tensor_util

EVENT_FILE_PATTERN = "events.out.tfevents.*"


class MetricWriter(abc.ABC):
  """clu.metric_writers.MetricWriter's interface (the parts this project uses)."""

  @abc.abstractmethod
  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Writes numbers (Python, NumPy or JAX scalars) at `step`."""

  @abc.abstractmethod
  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """Writes image batches (N, H, W, C): uint8, or floats in [0, 1]; C is 1, 3 or 4."""

  @abc.abstractmethod
  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    """Writes strings (TensorBoard renders them as Markdown)."""

  @abc.abstractmethod
  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Writes the run's hyperparameters (TensorBoard's HParams tab)."""

  @abc.abstractmethod
  def flush(self) -> None:
    """Everything written so far is on disk (or in the log) when this returns."""

  @abc.abstractmethod
  def close(self) -> None:
    """Flushes and releases the writer's files."""


class LoggingWriter(MetricWriter):
  """Every value to the INFO log, in clu's LoggingWriter format: `[<step>] a=1, b=2.5`
  (tests and scripts read training progress from these lines)."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
              for k, v in sorted((k, _python_number(v)) for k, v in scalars.items())]
    logging.info("[%d] %s", step, ", ".join(values))

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    logging.info("[%d] Got images: %s.", step, {k: np.shape(v) for k, v in images.items()})

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    logging.info("[%d] Got texts: %s.", step, dict(texts))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("[Hyperparameters] %s", dict(hparams))

  def flush(self) -> None:
    logging.flush()

  def close(self) -> None:
    self.flush()


_FILE_COUNTER = itertools.count()  # Two writers of one process in one second: distinct names.


class SummaryWriter(MetricWriter):
  """TensorBoard event files in `logdir`, written without TensorFlow.

  Each write ends with a flush to the OS: a run killed by SIGKILL (preemption without grace)
  keeps every value written before it, and at most the last record can be torn, which the
  readers here and TensorBoard skip.
  """

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_FILE_COUNTER)}")
    self.path = os.path.join(logdir, name)
    self._file: BinaryIO | None = open(self.path, "ab")
    self._lock = threading.Lock()  # Writes may come from a progress thread and the loop.
    self._write_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write_event(self, event: event_pb2.Event) -> None:
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    record = (header + struct.pack("<I", masked_crc32c(header)) + data +
              struct.pack("<I", masked_crc32c(data)))
    with self._lock:
      if self._file is None:
        raise ValueError(f"write to a closed SummaryWriter ({self.path})")
      self._file.write(record)
      self._file.flush()

  def _write_summary(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
    self._write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                      summary=summary_pb2.Summary(value=values)))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    metadata = scalar_metadata.create_summary_metadata(display_name=None, description=None)
    self._write_summary(step, [
        summary_pb2.Summary.Value(
            tag=tag, metadata=metadata,
            tensor=tensor_util.make_tensor_proto(np.float32(_python_number(value))))
        for tag, value in scalars.items()])

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    values = []
    for tag, batch in images.items():
      batch = _as_uint8_images(batch)
      height, width = batch.shape[1:3]
      # tf.summary.image's layout: width and height as strings, then one PNG per image.
      encoded = [str(width).encode(), str(height).encode(), *(_png(image) for image in batch)]
      values.append(summary_pb2.Summary.Value(
          tag=tag, metadata=image_metadata.create_summary_metadata(display_name=None,
                                                                   description=None),
          tensor=tensor_util.make_tensor_proto(encoded)))
    self._write_summary(step, values)

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    metadata = text_metadata.create_summary_metadata(display_name=None, description=None)
    self._write_summary(step, [
        summary_pb2.Summary.Value(tag=tag, metadata=metadata,
                                  tensor=tensor_util.make_tensor_proto([text.encode()]))
        for tag, text in texts.items()])

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    # The hparams plugin takes bool, int, float and str; other config values (tuples, None)
    # are shown as their repr, as clu does.
    plain = {k: v if isinstance(v, (bool, int, float, str)) else repr(v)
             for k, v in hparams.items()}
    summary = hparams_summary.hparams_pb(plain)
    self._write_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

  def flush(self) -> None:
    with self._lock:
      if self._file is not None:
        self._file.flush()

  def close(self) -> None:
    with self._lock:
      if self._file is not None:
        self._file.close()
        self._file = None


class MultiWriter(MetricWriter):
  """Forwards every call to each of `writers`."""

  def __init__(self, writers: list[MetricWriter]):
    self._writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for writer in self._writers:
      writer.write_scalars(step, scalars)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    for writer in self._writers:
      writer.write_images(step, images)

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for writer in self._writers:
      writer.write_texts(step, texts)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    for writer in self._writers:
      writer.write_hparams(hparams)

  def flush(self) -> None:
    for writer in self._writers:
      writer.flush()

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


def create_default_writer(logdir: str, *, just_logging: bool = False) -> MetricWriter:
  """Log lines, plus event files in `logdir` unless `just_logging` (processes other than 0 of
  a multi-host run only log: one set of event files per run)."""
  if just_logging:
    return LoggingWriter()
  return MultiWriter([LoggingWriter(), SummaryWriter(logdir)])


@contextlib.contextmanager
def closing(*writers: MetricWriter) -> Iterator[None]:
  """Closes `writers` (which flushes them) when the block ends, by an exception too: an event
  file left open is a ResourceWarning at exit and, on some file systems, a truncated record."""
  try:
    yield
  finally:
    for writer in writers:
      writer.close()


class ReportProgress:
  """clu.periodic_actions.ReportProgress's logging part: every `every_secs` (and at the last
  step) logs steps/s, percent done and the ETA, and writes `steps_per_sec` and `uptime`."""

  def __init__(self, *, num_train_steps: int | None = None,
               writer: MetricWriter | None = None, every_secs: float = 60.0):
    self._num_train_steps = num_train_steps
    self._writer = writer
    self._every_secs = every_secs
    self._t0 = time.monotonic()
    self._previous: tuple[int, float] | None = None

  def __call__(self, step: int, t: float | None = None) -> bool:
    """Call after each step with the wall time; True when it reported."""
    t = time.time() if t is None else t
    if self._previous is None:  # The first call (after compilation) starts the clock.
      self._previous = (step, t)
      return False
    last_step, last_t = self._previous
    due = t - last_t >= self._every_secs or step == self._num_train_steps
    if not due or step == last_step or t <= last_t:
      return False
    steps_per_sec = (step - last_step) / (t - last_t)
    message = f"{steps_per_sec:.1f} steps/s"
    if self._num_train_steps:
      eta = (self._num_train_steps - step) / steps_per_sec
      message += (f", {100 * step / self._num_train_steps:.1f}% ({step}/"
                  f"{self._num_train_steps}), ETA: {_format_secs(eta)}")
    logging.info("Setting work unit notes: %s", message)
    if self._writer is not None:
      self._writer.write_scalars(step, {"steps_per_sec": steps_per_sec,
                                        "uptime": time.monotonic() - self._t0})
    self._previous = (step, t)
    return True


# ------------------------------------------------------------------------------------------
# Reading event files back (tests, benchmarks, colorjax.compare).
# ------------------------------------------------------------------------------------------
def event_files(logdir: str) -> list[str]:
  """The event files directly in `logdir`, oldest first (names start with the creation time)."""
  return sorted(glob.glob(os.path.join(logdir, EVENT_FILE_PATTERN)))


def iter_events(path: str) -> Iterator[event_pb2.Event]:
  """The events of one file. Stops quietly at a torn or corrupt record: a process killed while
  writing leaves at most its last record incomplete, and everything before it is kept."""
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
      if masked_crc32c(header[:8]) != length_crc:
        logging.warning("%s: corrupt record length; read up to byte %d", path, f.tell() - 12)
        return
      body = f.read(length + 4)
      if len(body) < length + 4:
        return  # Torn last record.
      data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
      if masked_crc32c(data) != data_crc:
        logging.warning("%s: corrupt record; read up to byte %d", path, f.tell() - length - 16)
        return
      yield event_pb2.Event.FromString(data)


def read_scalars(logdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} over `logdir`'s event files in time order; a later value of a step
  wins (a resumed run rewrites the steps after its last checkpoint)."""
  scalars: dict[str, dict[int, float]] = {}
  for path in event_files(logdir):
    for event in iter_events(path):
      for value in event.summary.value:
        number = _scalar(value)
        if number is not None:
          scalars.setdefault(value.tag, {})[event.step] = number
  return scalars


def read_images(logdir: str) -> dict[str, dict[int, list[np.ndarray]]]:
  """{tag: {step: [uint8 image (H, W, C), ...]}} of the image summaries in `logdir`."""
  images: dict[str, dict[int, list[np.ndarray]]] = {}
  for path in event_files(logdir):
    for event in iter_events(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == image_metadata.PLUGIN_NAME:
          pngs = value.tensor.string_val[2:]
          images.setdefault(value.tag, {})[event.step] = [
              np.asarray(Image.open(io.BytesIO(png))) for png in pngs]
  return images


def _scalar(value: summary_pb2.Summary.Value) -> float | None:
  if value.HasField("simple_value"):  # Files from TF1-style writers.
    return float(value.simple_value)
  if value.HasField("tensor") and not value.tensor.string_val:
    number = tensor_util.make_ndarray(value.tensor)
    if number.size == 1:
      return float(number.reshape(()))
  return None


def _python_number(value: Any) -> Any:
  """JAX and NumPy scalars as Python numbers (formatting, protobufs)."""
  if isinstance(value, (bool, int, float)):
    return value
  array = np.asarray(value)
  if array.size != 1:
    raise ValueError(f"a scalar was expected, got shape {array.shape}")
  return array.reshape(()).item()


def _as_uint8_images(batch: Any) -> np.ndarray:
  batch = np.asarray(batch)
  if batch.ndim == 3:  # One image.
    batch = batch[None]
  if batch.ndim != 4 or batch.shape[-1] not in (1, 3, 4):
    raise ValueError(f"images must be (N, H, W, 1|3|4), got shape {batch.shape}")
  if batch.dtype != np.uint8:  # tf.summary.image's convention: floats in [0, 1].
    batch = np.round(np.clip(batch.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
  return batch


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()


def _format_secs(secs: float) -> str:
  """clu's format: 1h2m3s-style, without zero leading units."""
  secs = int(round(secs))
  hours, rest = divmod(secs, 3600)
  minutes, seconds = divmod(rest, 60)
  return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + \
      f"{seconds}s"
