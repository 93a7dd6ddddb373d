"""Test clips made from real photos, encoded with a real codec: for the video tests, the video
benchmark and the README's before/after strip.

Camera moves over scikit-image's colour photos (sub-pixel bicubic resampling, so the motion is
real and continuous, not whole-pixel shifts): a slow pan, a slow zoom, a cut between two photos,
and a real object (the cat's head from `chelsea`, cut out with a soft elliptical mask) moving
over a slowly panning background (`coffee`), which makes occlusions and disocclusions. No
dependency ships a real video clip, hence the composited moving object.
"""

from __future__ import annotations

import fractions
from typing import Iterable, Iterator, Sequence

import numpy as np

CLIPS = ("pan", "zoom", "cut", "object")


def _photos() -> dict[str, np.ndarray]:
  import skimage.data  # pylint: disable=g-import-not-at-top
  return {"astronaut": skimage.data.astronaut(), "coffee": skimage.data.coffee(),
          "chelsea": skimage.data.chelsea(), "rocket": skimage.data.rocket()}


def camera(photo: np.ndarray, width: int, height: int, cx: float, cy: float,
           zoom: float, reflect: bool = True) -> np.ndarray:
  """The (height, width) view of `photo` centred on photo point (cx, cy), with `zoom` frame
  pixels per photo pixel (bicubic, sub-pixel exact); outside the photo: its mirror image, or
  zeros with `reflect=False`."""
  import cv2  # pylint: disable=g-import-not-at-top
  # Frame pixel (u, v) shows photo point (cx + (u - width/2) / zoom, cy + (v - height/2) / zoom).
  matrix = np.array([[1 / zoom, 0, cx - width / 2 / zoom],
                     [0, 1 / zoom, cy - height / 2 / zoom]], np.float64)
  return cv2.warpAffine(photo, matrix, (width, height),
                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REFLECT if reflect else cv2.BORDER_CONSTANT)


def _base_zoom(photo: np.ndarray, width: int, height: int, cover: float = 0.7) -> float:
  """Zoom at which the frame shows `cover` of the photo's width or height."""
  ph, pw = photo.shape[:2]
  return max(width / (cover * pw), height / (cover * ph))


def pan(photo: np.ndarray, width: int, height: int, frames: int,
        travel: float = 0.2) -> Iterator[np.ndarray]:
  """A horizontal pan (with a slight drift down) across `travel` of the photo's width."""
  ph, pw = photo.shape[:2]
  zoom = _base_zoom(photo, width, height)
  for t in np.linspace(0.0, 1.0, frames):
    yield camera(photo, width, height, pw * (0.5 - travel / 2 + travel * t),
                 ph * (0.48 + 0.04 * t), zoom)


def zoom_in(photo: np.ndarray, width: int, height: int, frames: int,
            factor: float = 1.3) -> Iterator[np.ndarray]:
  """A slow zoom into the photo's centre, by `factor` over the clip."""
  ph, pw = photo.shape[:2]
  zoom = _base_zoom(photo, width, height)
  for t in np.linspace(0.0, 1.0, frames):
    yield camera(photo, width, height, pw / 2, ph / 2, zoom * factor ** t)


def moving_object(background: np.ndarray, thing: np.ndarray, width: int, height: int,
                  frames: int) -> Iterator[np.ndarray]:
  """`thing` (cut out with a soft ellipse) crossing a slowly panning `background`."""
  th, tw = thing.shape[:2]
  yy, xx = np.mgrid[0:th, 0:tw]
  ellipse = ((yy - th / 2) / (th / 2)) ** 2 + ((xx - tw / 2) / (tw / 2)) ** 2
  mask = np.clip((1.0 - ellipse) * 6.0, 0.0, 1.0).astype(np.float32)[..., None]
  scale = 0.45 * height / th  # The object is 45% of the frame's height.
  canvas = np.dstack([thing, (mask * 255).astype(np.uint8)])
  for t, view in zip(np.linspace(0.0, 1.0, frames), pan(background, width, height, frames, 0.1)):
    ox = width * (0.15 + 0.7 * t)
    oy = height * (0.55 - 0.1 * np.sin(np.pi * t))
    layer = camera(canvas, width, height, tw / 2 + (width / 2 - ox) / scale,
                   th / 2 + (height / 2 - oy) / scale, scale, reflect=False)
    alpha = layer[..., 3:].astype(np.float32) / 255.0
    yield np.round(view * (1 - alpha) + layer[..., :3] * alpha).astype(np.uint8)


def make_clip(name: str, width: int, height: int, frames: int) -> Iterator[np.ndarray]:
  """uint8 RGB frames of one of `CLIPS`; "cut" switches photos at frame `frames // 2`."""
  photos = _photos()
  if name == "pan":
    return pan(photos["astronaut"], width, height, frames)
  if name == "zoom":
    return zoom_in(photos["rocket"], width, height, frames)
  if name == "cut":
    half = frames // 2

    def cut() -> Iterator[np.ndarray]:
      yield from pan(photos["astronaut"], width, height, half)
      yield from zoom_in(photos["coffee"], width, height, frames - half, 1.15)
    return cut()
  if name == "object":
    cat = photos["chelsea"][40:260, 100:330]  # The cat's head and shoulders.
    return moving_object(photos["coffee"], cat, width, height, frames)
  raise ValueError(f"unknown clip {name!r}; one of {CLIPS}")


def write_video(path: str, frames: Iterable[np.ndarray], fps: int | fractions.Fraction = 25,
                codec: str | None = None, pix_fmt: str = "yuv420p", crf: int = 18,
                audio_seconds: float = 0.0, rotation: int = 0,
                pts: Sequence[int] | None = None, time_base: fractions.Fraction | None = None,
                container_options: dict[str, str] | None = None) -> int:
  """Encodes uint8 RGB frames with a real codec (libx264 if this FFmpeg has it, else mpeg4;
  VP9 for .webm); optionally with an AAC (Opus for .webm) 440 Hz sine of `audio_seconds`, a
  display rotation, and explicit timestamps `pts` in `time_base` (variable frame rate).
  Returns the number of frames written."""
  import av  # pylint: disable=g-import-not-at-top
  webm = path.lower().endswith(".webm")
  if codec is None:
    codec = "libvpx-vp9" if webm else ("libx264" if "libx264" in av.codecs_available else "mpeg4")
  options = {"crf": str(crf)} if codec in ("libx264", "libvpx-vp9") else {}
  if codec == "libx264":
    options["threads"] = "1"  # Multi-threaded x264 measured not bit-exact from run to run.
  if codec == "libvpx-vp9":
    options.update({"b": "0", "deadline": "realtime", "cpu-used": "8"})
  count = 0
  with av.open(path, "w", options=container_options or {}) as out:
    stream = None
    for i, frame in enumerate(frames):
      if stream is None:
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width = frame.shape[:2]
        stream.pix_fmt = pix_fmt
        if time_base is not None:
          stream.codec_context.time_base = time_base
        if rotation:
          stream.set_display_rotation(rotation)
        audio = _add_audio(out, webm) if audio_seconds > 0 else None
      video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), "rgb24")
      if pts is not None:
        video_frame.pts = int(pts[i])
        video_frame.time_base = time_base
      for packet in stream.encode(video_frame):
        out.mux(packet)
      count += 1
    for packet in stream.encode(None):
      out.mux(packet)
    if audio is not None:
      _write_sine(out, audio, audio_seconds)
  return count


def _add_audio(out, webm: bool):
  stream = out.add_stream("libopus" if webm else "aac", rate=48000)
  stream.layout = "mono"
  return stream


def _write_sine(out, stream, seconds: float) -> None:
  import av  # pylint: disable=g-import-not-at-top
  rate = stream.codec_context.sample_rate
  chunk = stream.codec_context.frame_size or 1024
  total = int(seconds * rate)
  for start in range(0, total, chunk):
    t = np.arange(start, min(total, start + chunk)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None]
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate, frame.pts = rate, start
    for packet in stream.encode(frame):
      out.mux(packet)
  for packet in stream.encode(None):
    out.mux(packet)


def read_frames(path: str) -> list[np.ndarray]:
  """All frames of a (short) video as uint8 RGB, coded orientation."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
