"""Reading and writing video with PyAV (the FFmpeg binding): frames upright, audio copied,
colour tags, rotation and timestamps kept (see `colorjax.video`'s module doc)."""

from __future__ import annotations

import fractions
import os
from typing import Any, Callable, Iterator

import av
import numpy as np

_UNSPECIFIED = 2  # AVCOL_SPC_UNSPECIFIED, AVCOL_PRI_UNSPECIFIED, AVCOL_TRC_UNSPECIFIED.

Frame = tuple[Any, np.ndarray]  # (the decoded av.VideoFrame, its pixels upright, uint8 RGB).


def _open_input(src: str):
  if not os.path.isfile(src):
    raise FileNotFoundError(f"no such video file: {src}")
  try:
    container = av.open(src)
  except av.error.FFmpegError as e:
    raise ValueError(f"cannot read {src} as a video ({e.strerror or e}): unsupported, "
                     "damaged, or truncated before its index was written") from e
  if not container.streams.video:
    kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
    container.close()
    raise ValueError(f"{src} has no video stream (streams: {kinds})")
  return container


def _expected_frames(stream, container) -> tuple[int | None, bool]:
  """(frame count, whether it is exact: the container's index has it) or an estimate from
  the duration, for the progress bar."""
  # Only the MP4/MOV sample tables count frames exactly; AVI's index, for one, can count an
  # empty chunk as a frame.
  if stream.frames and "mp4" in container.format.name:
    return int(stream.frames), True
  return _estimated_frames(stream, container), False


def _estimated_frames(stream, container) -> int | None:
  rate = stream.average_rate or stream.guessed_rate
  if stream.duration and stream.time_base and rate:
    return int(round(float(stream.duration * stream.time_base * rate)))
  if container.duration and rate:
    return int(round(container.duration / 1e6 * float(rate)))
  return None


class VideoReader:
  """The first video stream of `src`, decoded in batches of upright RGB frames.

  Audio packets are handed to a sink as they are demuxed (copied, not decoded). Undecodable
  packets are skipped and recorded; a demuxing error ends the stream; `stopped_early` then says
  where. Use as a context manager.
  """

  def __init__(self, src: str):
    self.src = src
    self.container = _open_input(src)
    self.stream = self.container.streams.video[0]
    self.stream.thread_type = "AUTO"
    self.audio_streams = list(self.container.streams.audio)
    self.width = self.stream.codec_context.width
    self.height = self.stream.codec_context.height
    self.rate = self.stream.average_rate or self.stream.guessed_rate or fractions.Fraction(25)
    self.expected_frames, self.exact_count = _expected_frames(self.stream, self.container)
    self.duration = (self.container.duration or 0) / 1e6  # What the header promises (s).
    self.start = (self.container.start_time or 0) / 1e6
    self.rotation: int | None = None  # Quarter turns, known at the first frame.
    self.problems: list[str] = []
    self.data_end = 0.0  # Latest end time (s) of any packet read: where the data stops.

  def __enter__(self) -> "VideoReader":
    return self

  def __exit__(self, *exc_info) -> None:
    self.container.close()

  def _decode(self, mux_audio: Callable[[Any], None]) -> Iterator[Any]:
    packets = self.container.demux(self.stream, *self.audio_streams)
    while True:
      try:
        packet = next(packets)
      except StopIteration:
        return
      except av.error.FFmpegError as e:
        self.problems.append(f"reading stopped: {e.strerror or e}")
        return
      if packet.pts is not None and packet.time_base is not None:
        end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
        self.data_end = max(self.data_end, end)
      if packet.stream.type == "audio":
        if packet.dts is not None:  # Demuxers end each stream with an empty flush packet.
          mux_audio(packet)
        continue
      try:
        frames = packet.decode()
      except av.error.FFmpegError as e:
        self.problems.append(f"undecodable packet at pts {packet.pts}: {e.strerror or e}")
        continue
      yield from frames

  def batches(self, size: int, mux_audio: Callable[[Any], None],
              on_first_frame: Callable[[Any], None]) -> Iterator[list[Frame]]:
    """Lists of up to `size` (frame, upright pixels); `on_first_frame(frame)` runs as soon as
    the first frame decodes, before any other packet is handed on."""
    pending: list[Frame] = []
    for frame in self._decode(mux_audio):
      if self.rotation is None:
        self.rotation = int(round((frame.rotation or 0) / 90.0)) % 4
        on_first_frame(frame)
      array = frame.to_ndarray(format="rgb24")
      if self.rotation:  # The model was trained on upright photos.
        array = np.ascontiguousarray(np.rot90(array, self.rotation))
      pending.append((frame, array))
      if len(pending) == size:
        yield pending
        pending = []
    if pending:
      yield pending

  def stopped_early(self, written: int, last_time: float) -> str | None:
    """Why fewer frames than the file promises were written, or None."""
    expected = self.expected_frames
    # Truncation shows as fewer frames than the index lists (mp4, mov) or, without an index
    # count (mkv, webm), as data that ends before the duration the header promises.
    short_data = self.duration > 0 and self.data_end - self.start < self.duration - max(
        0.2, 2 / float(self.rate))
    if not (self.problems or (self.exact_count and written < expected) or
            (not self.exact_count and short_data)):
      return None
    problems = self.problems
    return (f"{self.src}: decoding stopped after frame {written} (t = {last_time:.2f} s)"
            + (f" of {expected}" if self.exact_count else
               f" of about {expected}" if expected else "")
            + (f"; {problems[0]}" if problems else "")
            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
            + f": truncated or damaged input; the {written} frames that decoded were written")


def _video_codec(dst: str, width: int, height: int) -> tuple[str, str, dict[str, str]]:
  """(codec, pixel format, options) for the destination's container and the frame size."""
  odd = width % 2 or height % 2
  if os.path.splitext(dst)[1].lower() == ".webm":  # WebM takes VP8/VP9/AV1 only.
    return ("libvpx-vp9", "yuv444p" if odd else "yuv420p",
            {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"})
  if "libx264" in av.codecs_available:
    return "libx264", "yuv444p" if odd else "yuv420p", {"crf": "18", "preset": "fast"}
  if odd:
    raise ValueError(f"{width}x{height} frames need a 4:4:4 codec and this FFmpeg build has no "
                     "libx264; give an even-sized video")
  return "mpeg4", "yuv420p", {"qscale": "3"}


def _copy_colour_tags(frame, source, target) -> dict[str, int]:
  """Tags the output with the input's colour matrix, range, primaries and transfer; returns
  the `reformat` arguments that encode RGB with that matrix and range. Untagged inputs are
  decoded and encoded with FFmpeg's default (BT.601, limited range) and stay untagged."""
  matrix = {}
  if frame.colorspace not in (None, 0, _UNSPECIFIED):
    matrix["dst_colorspace"] = target.colorspace = frame.colorspace
  if frame.color_range in (1, 2):  # MPEG (limited) or JPEG (full).
    matrix["dst_color_range"] = target.color_range = frame.color_range
  for tag in ("color_primaries", "color_trc"):
    value = getattr(source, tag, None)
    if value not in (None, 0, _UNSPECIFIED):
      setattr(target, tag, value)
  return matrix


class VideoWriter:
  """Writes `reader`'s video, colorized, to `path` (the container named by `dst`'s extension):
  H.264 (or VP9 for WebM) at the input's size, rate and timestamps, with its colour tags and
  rotation, and its audio packets copied. Use as a context manager; the encoder is flushed
  when the block completes."""

  def __init__(self, path: str, dst: str, reader: VideoReader):
    self.reader = reader
    self.written = 0
    self.last_time = 0.0
    self._last_pts: int | None = None
    self._matrix: dict[str, int] = {}
    self._pix_fmt = ""
    self.container = av.open(path, "w")
    try:
      self._add_streams(dst)
    except BaseException:
      self.container.close()
      raise

  def _add_streams(self, dst: str) -> None:
    vin, reader = self.reader.stream, self.reader
    codec, self._pix_fmt, options = _video_codec(dst, reader.width, reader.height)
    self.stream = self.container.add_stream(codec, rate=reader.rate, options=options)
    self.stream.width, self.stream.height = reader.width, reader.height
    self.stream.pix_fmt = self._pix_fmt
    self.stream.time_base = vin.time_base
    self.stream.codec_context.time_base = vin.time_base
    try:
      self._audio = {s: self.container.add_stream_from_template(s)
                     for s in reader.audio_streams}
    except (ValueError, av.error.FFmpegError) as e:
      raise ValueError(f"cannot copy the audio of {reader.src} into {os.path.basename(dst)}: "
                       f"{e}; use the input's container (extension)") from e

  def __enter__(self) -> "VideoWriter":
    return self

  def __exit__(self, exc_type, *exc_info) -> None:
    try:
      if exc_type is None:
        for packet in self.stream.encode(None):
          self.container.mux(packet)
    finally:
      self.container.close()

  def mux_audio(self, packet) -> None:
    packet.stream = self._audio[packet.stream]
    self.container.mux(packet)

  def start(self, first_frame) -> None:
    """Takes the input's rotation and colour tags from its first frame."""
    if self.reader.rotation:
      self.stream.set_display_rotation(90 * self.reader.rotation)
    self._matrix = _copy_colour_tags(first_frame, self.reader.stream.codec_context,
                                     self.stream.codec_context)

  def write(self, source_frame, rgb: np.ndarray) -> None:
    """Encodes upright uint8 RGB pixels at `source_frame`'s time, turned back as it was."""
    if self.reader.rotation:
      rgb = np.ascontiguousarray(np.rot90(rgb, -self.reader.rotation))
    new = av.VideoFrame.from_ndarray(rgb, "rgb24")
    # RGB -> YUV with the matrix and range the input was decoded with (PyAV decodes by the
    # frame's tags): L survives the round trip, and the output carries the same tags.
    new = new.reformat(format=self._pix_fmt, **self._matrix)
    new.pts = self._monotonic_pts(source_frame)
    new.time_base = self.reader.stream.time_base
    for packet in self.stream.encode(new):
      self.container.mux(packet)
    self.written += 1
    self.last_time = float(new.pts * new.time_base)

  def _monotonic_pts(self, frame) -> int:
    """The input frame's pts (variable frame rate kept), made strictly increasing as encoders
    require; missing ones continue at the stream's rate."""
    rate, time_base = self.reader.rate, self.reader.stream.time_base
    pts, last = frame.pts, self._last_pts
    step = max(1, int(round(1 / (rate * time_base)))) if rate and time_base else 1
    if pts is None:
      pts = 0 if last is None else last + step
    elif last is not None and pts <= last:
      pts = last + 1
    self._last_pts = pts
    return pts
