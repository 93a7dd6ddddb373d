"""The model's part of colorizing a video: frames in batches through the photo path of
`colorjax.inference`, ab smoothed over time, and the whole file from reader to writer."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from colorjax import inference
from colorjax.core import files
from colorjax.video import io
from colorjax.video import smoothing

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
DEFAULT_WORK_SIZE = 256


def is_video(path: str) -> bool:
  """Whether `path` has one of the video extensions the colorize command routes here."""
  return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


@dataclasses.dataclass
class VideoResult:
  """What `colorize_video` wrote."""
  path: str
  frames: int
  expected_frames: int | None
  width: int
  height: int
  fps: float
  audio_streams: int
  cuts: list[int]
  seconds: float
  stopped_early: str | None = None


@functools.partial(jax.jit, static_argnums=(1, 2))
def _analyse(frames: jax.Array, render_size: int,
             work_shape: tuple[int, int] | None) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """uint8 (B, H, W, 3) -> (full-res L, normalised L at render size, L at the work size)."""
  l_full, l_norm = inference.prepare(frames, render_size)
  if work_shape is None:
    return l_full, l_norm, None
  shape = l_full.shape[:1] + work_shape + (1,)
  return l_full, l_norm, jax.image.resize(l_full, shape, "linear", antialias=True)[..., 0]


@functools.partial(jax.jit, static_argnums=1)
def _ab_to_work(ab_norm: jax.Array, work_shape: tuple[int, int]) -> jax.Array:
  return jax.image.resize(ab_norm, ab_norm.shape[:1] + work_shape + (2,), "linear")


_finish = jax.jit(inference.finish)


@jax.jit
def _finish_with_correction(frames: jax.Array, l_full: jax.Array, ab_norm: jax.Array,
                            correction: jax.Array) -> jax.Array:
  """`inference.finish` with ab = the prediction upsampled from render size, plus the temporal
  correction (smoothed - predicted, at the work size) upsampled: where the smoother changes
  nothing, the frame is exactly what the photo path gives, not a twice-resampled copy."""
  shape = l_full.shape[:-1] + (2,)
  ab = (jax.image.resize(ab_norm.astype(jnp.float32), shape, "linear") +
        jax.image.resize(correction, shape, "linear"))
  return inference.finish(frames, l_full, ab)


def work_shape_for(height: int, width: int, work_size: int) -> tuple[int, int]:
  """The smoothing resolution: the frame scaled so its long side is `work_size` (never up)."""
  scale = min(1.0, work_size / max(height, width))
  return max(1, round(height * scale)), max(1, round(width * scale))


class _Colorizing:
  """The per-batch model path for frames of one size; keeps the smoother's state."""

  def __init__(self, colorizer: inference.Colorizer, height: int, width: int,
               smoother: smoothing.TemporalSmoother | None, work_size: int):
    self.colorizer = colorizer
    self.smoother = smoother
    self.work_shape = work_shape_for(height, width, work_size) if smoother else None
    self.cuts: list[int] = []
    self.count = 0

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, 3) upright frames -> colorized uint8 (n, H, W, 3)."""
    n = len(frames)
    size = self.colorizer.batch_size
    if n < size:  # One compiled shape: pad the last batch by repeating its last frame.
      frames = np.concatenate([frames, np.repeat(frames[-1:], size - n, axis=0)])
    batch = jnp.asarray(frames)
    l_full, l_norm, l_work = _analyse(batch, self.colorizer.render_size, self.work_shape)
    ab = self.colorizer.predict_ab(l_norm)
    if self.smoother is None:
      self.count += n
      return np.asarray(_finish(batch, l_full, ab))[:n]
    ab_work = np.asarray(_ab_to_work(ab, self.work_shape))
    l_work = np.asarray(l_work)
    correction = np.zeros_like(ab_work)
    for i in range(n):
      correction[i] = self.smoother(l_work[i], ab_work[i]) - ab_work[i]
      if self.smoother.last_cut:
        self.cuts.append(self.count + i)
    self.count += n
    return np.asarray(_finish_with_correction(batch, l_full, ab, jnp.asarray(correction)))[:n]


def colorize_video(colorizer: inference.Colorizer, src: str, dst: str, *,
                   temporal_smoothing: float = smoothing.DEFAULT_STRENGTH,
                   work_size: int = DEFAULT_WORK_SIZE,
                   cut_threshold: float = smoothing.DEFAULT_CUT_THRESHOLD,
                   progress: bool = True,
                   on_frame: Callable[[np.ndarray, np.ndarray, bool], None] | None = None
                   ) -> VideoResult:
  """Colorizes the video `src` into `dst` (see the `colorjax.video` module doc).

  Args:
    colorizer: a trained model (`inference.Colorizer.from_workdir`); its batch_size is the
      number of frames per model call.
    src: any video FFmpeg reads.
    dst: the output path; its extension picks the container (use the input's, e.g. .mp4, to
      be sure the copied audio fits).
    temporal_smoothing: strength in [0, 1] of the motion-compensated smoothing; 0 colorizes
      every frame on its own.
    work_size: long side of the resolution the flow and the smoothing run at.
    cut_threshold: L-histogram change (total variation, 0..1) that counts as a scene cut.
    progress: show a progress bar (frames/s, ETA) on stderr.
    on_frame: called with (input frame, output frame, is_cut) for every frame, uint8 RGB,
      upright (e.g. to measure flicker without decoding the output again).

  Returns:
    A `VideoResult`; `stopped_early` is set when the input was truncated or damaged.
  """
  if not 0.0 <= temporal_smoothing <= 1.0:
    raise ValueError(f"temporal_smoothing must be in [0, 1], got {temporal_smoothing}")
  if os.path.exists(dst) and os.path.samefile(src, dst):
    raise ValueError(f"output {dst} is the input; refusing to overwrite it")
  start_time = time.perf_counter()
  smoother = (smoothing.TemporalSmoother(temporal_smoothing, cut_threshold)
              if temporal_smoothing > 0 else None)
  colorizing = None
  # FFmpeg picks the muxer from the temporary name's extension; the final name appears only
  # once the whole file is written.
  with io.VideoReader(src) as reader, \
       files.atomic_path(dst, suffix=os.path.splitext(dst)[1]) as tmp:
    with io.VideoWriter(tmp, dst, reader) as writer, \
         tqdm(total=reader.expected_frames, unit="frame", disable=not progress,
              file=sys.stderr, desc=os.path.basename(src)) as bar:
      for batch in reader.batches(colorizer.batch_size, writer.mux_audio, writer.start):
        pixels = np.stack([array for _, array in batch])
        if colorizing is None:  # Sized by the first frame, upright.
          colorizing = _Colorizing(colorizer, pixels.shape[1], pixels.shape[2], smoother,
                                   work_size)
        for (frame, array), result in zip(batch, colorizing(pixels)):
          if on_frame is not None:
            on_frame(array, result, writer.written in colorizing.cuts)
          writer.write(frame, result)
        bar.update(len(batch))
    if writer.written == 0:
      problems = reader.problems
      raise ValueError(f"no frame of {src} could be decoded"
                       + (f" ({problems[0]})" if problems else ""))
  return VideoResult(dst, writer.written, reader.expected_frames, reader.width, reader.height,
                     float(reader.rate), len(reader.audio_streams), colorizing.cuts,
                     time.perf_counter() - start_time,
                     reader.stopped_early(writer.written, writer.last_time))


def run_jobs(colorizer: inference.Colorizer, jobs: Sequence[tuple[str, str]],
             temporal_smoothing: float = smoothing.DEFAULT_STRENGTH, progress: bool = True
             ) -> tuple[list[str], list[tuple[str, str]]]:
  """The colorize command's video part: [(source, output)] -> (written outputs,
  [(source, reason)] for videos that produced nothing). Truncated inputs are written and
  reported on stderr with where they stopped."""
  written, skipped = [], []
  for source, output in jobs:
    try:
      result = colorize_video(colorizer, source, output, temporal_smoothing=temporal_smoothing,
                              progress=progress)
    except (ValueError, OSError) as e:
      skipped.append((source, str(e)))
      continue
    if result.stopped_early:
      print(f"warning: {result.stopped_early}", file=sys.stderr)
    written.append(output)
  return written, skipped
