"""What a training run prints for the person who started it: a line while the step compiles,
a live progress line (steps/s, images/s, losses, ETA) and, at the end, where the results are.

Library logs (Orbax, absl, TensorFlow) stay hidden unless asked for with --verbosity; these lines
are printed on stderr by process 0 only. On a terminal the progress is a tqdm bar; otherwise
(a log file, a batch job) one line every `every_secs` seconds, so logs stay short and greppable.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging as std_logging
import os
import sys
import time
from typing import Any, Iterator, Mapping, TextIO

from absl import logging

# Shown in the progress line, in this order, when the step reports them.
LOSS_KEYS = ("g_loss", "d_loss", "g_l1", "g_ce")


def duration(seconds: float) -> str:
  """'42s', '3m05s', '1h02m'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _is_tty(stream: TextIO) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):
    return False


class TrainProgress:
  """Progress of the training loop; a context manager that closes its bar."""

  def __init__(self, first_step: int, num_steps: int, batch_size: int, *, enabled: bool = True,
               every_secs: float = 30.0, stream: TextIO | None = None):
    self._first, self._total, self._batch = first_step, num_steps, batch_size
    self._enabled, self._every = enabled, every_secs
    self._stream = stream or sys.stderr
    self._bar = None
    self._losses: dict[str, float] = {}
    self._input_wait: float | None = None  # Share of the loop's time spent waiting for input.
    self._started = time.perf_counter()
    self._rate_start: tuple[int, float] | None = None  # (step, time) after compilation.
    self._last_line = 0.0
    self._step = first_step

  def __enter__(self) -> "TrainProgress":
    if self._enabled and self._first < self._total:
      where = "from scratch" if self._first == 0 else f"resuming at step {self._first}"
      self._print(f"training {where} to step {self._total}; compiling the train step "
                  "(the first step waits for it)...")
    return self

  def step_done(self, step: int, metrics: Any) -> None:
    """After each step; `metrics` (device arrays) are waited for only after the first step."""
    self._step = step
    if not self._enabled:
      return
    now = time.perf_counter()
    if self._rate_start is None:
      # (a) colorize, serve and export import this module before they know they need JAX
      # (~650 ms): their --help and usage errors answer without it.
      import jax  # pylint: disable=g-import-not-at-top
      jax.block_until_ready(metrics)
      now = time.perf_counter()
      self._print(f"compiled and ran the first step in {duration(now - self._started)}")
      self._rate_start = (step, now)
      self._last_line = now
      if _is_tty(self._stream):
        # (a) colorjax.inference imports this module: tqdm would add ~7 ms to its import.
        from tqdm import tqdm  # pylint: disable=g-import-not-at-top
        self._bar = tqdm(total=self._total, initial=step, unit="step", file=self._stream,
                         dynamic_ncols=True, smoothing=0.1)
      return
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix_str(self._postfix(), refresh=False)
    elif now - self._last_line >= self._every or step == self._total:
      self._last_line = now
      self._print(self.line(step, now))

  def losses(self, summary: Mapping[str, float]) -> None:
    """The means of the latest logging window (what TensorBoard gets too)."""
    shown = [k for k in LOSS_KEYS if k in summary] or [k for k in summary if "loss" in k][:2]
    self._losses = {k: float(summary[k]) for k in shown}
    if "input_wait_share" in summary:
      self._input_wait = float(summary["input_wait_share"])

  def note(self, text: str) -> None:
    """A line that does not break the bar (evals, a stop request)."""
    if self._enabled:
      self._print(text)

  def evaluated(self, step: int, results: Mapping[str, float]) -> None:
    if not results:
      return
    shown = [f"{k}={results[k]:.4g}" for k in ("psnr", "gray_psnr", "ssim", "auc", "fid")
             if k in results]
    self.note(f"eval at step {step}: {', '.join(shown)}")

  def _rates(self, step: int, now: float) -> tuple[float, float]:
    start_step, start_time = self._rate_start or (step, now)
    steps_per_sec = (step - start_step) / max(now - start_time, 1e-9)
    return steps_per_sec, steps_per_sec * self._batch

  def _postfix(self) -> str:
    _, images_per_sec = self._rates(self._step, time.perf_counter())
    return ", ".join([f"{images_per_sec:.1f} img/s"] + self._input_wait_text() +
                     [f"{k}={v:.3g}" for k, v in self._losses.items()])

  def _input_wait_text(self) -> list[str]:
    """'input wait 62%': above a few percent, input, not the step, limits images/s."""
    return [] if self._input_wait is None else [f"input wait {self._input_wait:.0%}"]

  def line(self, step: int, now: float) -> str:
    """'step 120/600 (20%) | 2.10 steps/s, 16.8 images/s, input wait 3% | g_loss=3.21 |
    ETA 3m48s'."""
    steps_per_sec, images_per_sec = self._rates(step, now)
    parts = [f"step {step}/{self._total} ({100 * step // max(self._total, 1)}%)",
             ", ".join([f"{steps_per_sec:.2f} steps/s, {images_per_sec:.1f} images/s"] +
                       self._input_wait_text())]
    if self._losses:
      parts.append(" ".join(f"{k}={v:.4g}" for k, v in self._losses.items()))
    if steps_per_sec > 0 and step < self._total:
      parts.append(f"ETA {duration((self._total - step) / steps_per_sec)}")
    return " | ".join(parts)

  def _print(self, text: str) -> None:
    if self._bar is not None:
      self._bar.write(text, file=self._stream)
    else:
      print(text, file=self._stream, flush=True)

  def __exit__(self, *exc) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def run_summary(workdir: str, seconds: float) -> str:
  """Where a finished run left its results, and the TensorBoard command."""
  checkpoints = os.path.join(workdir, "checkpoints")
  steps = sorted(int(n) for n in os.listdir(checkpoints) if n.isdigit()) \
      if os.path.isdir(checkpoints) else []
  lines = [f"done in {duration(seconds)}" + (f", at step {steps[-1]}" if steps else "")]
  if steps:
    lines.append(f"  checkpoints: {checkpoints}/ (steps {', '.join(map(str, steps))})")
  grids = sorted(glob.glob(os.path.join(workdir, "samples", "step_*.png")))
  if grids:
    lines.append(f"  samples:     {grids[-1]}")
  latest = os.path.join(workdir, "eval", "latest.json")
  if os.path.isfile(latest):
    lines.append(f"  eval:        {latest}{eval_headline(latest)}")
  lines.append(f"  TensorBoard: tensorboard --logdir {workdir}")
  lines.append(f"  colorize:    python -m colorjax.colorize --workdir={workdir} PHOTOS -o OUT")
  return "\n".join(lines)


def eval_headline(path: str) -> str:
  try:
    with open(path) as f:
      record = json.load(f)
    return (f" (step {record['step']}: PSNR {record['model']['psnr']:.2f} dB, gray baseline "
            f"{record['gray_baseline']['psnr']:.2f})")
  except (OSError, ValueError, KeyError, TypeError):
    return ""


# ------------------------------------------------------------------------------------------
# Library chatter.
# ------------------------------------------------------------------------------------------
class _DropReadOnlyNotice:
  """Orbax warns 'Given directory is read only' (and that read_only changes its save options)
  whenever a reader (eval, colorize, export, serve) opens checkpoints read-only, which is what
  they are meant to do: not a warning."""

  NOTICES = ("Given directory is read only", "CheckpointManagerOptions.read_only=True")

  def filter(self, record) -> bool:
    return not str(record.msg).startswith(self.NOTICES)


@contextlib.contextmanager
def read_only_notices_hidden() -> Iterator[None]:
  """Within the block, Orbax's read-only notices (`_DropReadOnlyNotice`) are dropped, and only
  those: for library calls (`inference.Colorizer.from_workdir`) from a user's own Python."""
  notice_filter = _DropReadOnlyNotice()
  logger = std_logging.getLogger("absl")
  logger.addFilter(notice_filter)
  try:
    yield
  finally:
    logger.removeFilter(notice_filter)


def quiet_libraries(verbose: bool = False) -> None:
  """Hides library INFO logs and TensorFlow's start-up lines unless `verbose`.

  Call before TensorFlow is imported (TFDS, clu, jax2tf import it): its C++ logging reads the
  environment once. The oneDNN notice is printed whatever TF_CPP_MIN_LOG_LEVEL says; TF only
  reads datasets and runs exported SavedModels here, so its oneDNN kernels are not needed.
  """
  std_logging.getLogger("absl").addFilter(_DropReadOnlyNotice())
  if verbose:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  logging.set_verbosity(logging.WARNING)
