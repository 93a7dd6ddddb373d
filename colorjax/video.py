"""Colorizing videos with temporally stable colours: `colorize_video(colorizer, src, dst)`.

  python -m colorjax.colorize --workdir=runs/lsgan film.mp4 -o colorized/

Per frame, exactly the photo path of `colorjax.inference`: the full-resolution L (CIE Lab) of the
frame is kept untouched, the model predicts ab at its render size from the frame's luminance
(colour videos are colorized from their luminance, like photos), and ab is upsampled and
recombined with the full-resolution L.

Between frames, the predicted ab is smoothed over time with motion compensation, because a model
that colorizes each frame on its own makes colours jump from frame to frame (flicker):

1. Dense optical flow on L, from the current frame back to the previous one (DIS, Kroeger et al.
   2016, "Fast Optical Flow using Dense Inverse Search", OpenCV's implementation), at a reduced
   "work" resolution (long side `work_size`, 256 px by default): ab is low-frequency, so nothing
   is lost there, and the flow costs a few ms per frame. Chosen over Farneback (2003) and
   scikit-image's iterative Lucas-Kanade (`optical_flow_ilk`) by speed and accuracy on the test
   clips: benchmarks/README.md, "Videos", has the measurements.
2. The previous *smoothed* ab is warped into the current frame and blended with the current
   prediction: out = (1 - w) * ab_t + w * warp(out_{t-1}), with w = strength * confidence. The
   confidence is per pixel, the product of
   - photometric agreement: exp(-(L_t - warp(L_{t-1}))^2 / (2 sigma^2)), low where the warp does
     not explain the current frame (occlusions, new content, flow errors);
   - forward-backward consistency of the flow (Sundaram et al. 2010, as used for occlusion masks
     by Ruder et al. 2016): low where the backward flow and the forward flow do not cancel;
   - zero where the warp samples from outside the previous frame.
   This is a recursive (exponential) filter along motion trajectories: on static or well-tracked
   content, strength 0.8 averages over about 5 frames; where the warp fails, the fresh
   prediction is used as it is.
3. Scene cuts reset the filter: a cut is declared when the histograms of L of two consecutive
   frames differ by more than `cut_threshold` in total variation (half the L1 distance of the
   normalised 32-bin histograms; cf. Zhang, Kankanhalli & Smoliar 1993 for histogram
   comparison in cut detection). The per-pixel confidence would also reject most of a cut,
   but the reset makes it exact.

Flicker and fidelity are measured with `FlickerMeter`: the warping error of Lai et al. 2018
("Learning Blind Video Temporal Consistency"), mean ab difference between each output frame and
the previous output frame warped by flow computed on the *original* frames, over non-occluded
pixels; PSNR and colourfulness (Hasler & Suesstrunk 2003) against the original colour frames.

Input and output (PyAV, the FFmpeg binding):
- Any container/codec FFmpeg reads. The output uses the input's container (by the destination's
  extension) with H.264 (libx264, CRF 18) or VP9 for .webm, at the input's frame size, frame
  rate, frame count and timestamps (pts copied, so variable frame rate is kept). Audio streams
  are copied packet by packet, not re-encoded.
- Odd frame sizes: 4:2:0 chroma needs even sides, so such frames are encoded 4:4:4 (yuv444p;
  H.264 High 4:4:4 Predictive), which keeps the exact size; some players (browsers) do not play
  4:4:4 H.264. Even sizes use yuv420p, which plays everywhere.
- Colour tags (matrix, range, primaries, transfer) are copied, and RGB is encoded with the
  input's matrix and range, e.g. BT.709 for HD; untagged inputs stay untagged (BT.601).
- Rotation metadata (display matrix) is kept: frames are turned upright for the model (it was
  trained on upright photos), turned back, and the output carries the input's rotation, so it
  displays exactly like the input.
- A truncated or damaged file: every frame that decodes is written, undecodable packets are
  skipped, and `VideoResult.stopped_early` (printed by the CLI) says where decoding stopped.
- The output is written under a temporary name next to the destination and renamed at the
  end, so a partial file never sits under the final name.
Memory does not grow with the video's length: frames stream through in batches.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import os
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import inference
from colorjax.core import files

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
DEFAULT_STRENGTH = 0.8
DEFAULT_WORK_SIZE = 256
DEFAULT_CUT_THRESHOLD = 0.4
_HIST_BINS = 32


def is_video(path: str) -> bool:
  """Whether `path` has one of the video extensions the colorize command routes here."""
  return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


# ------------------------------------------------------------------------------------------
# Optical flow and warping (OpenCV).
# ------------------------------------------------------------------------------------------
def _cv2():
  import cv2  # pylint: disable=g-import-not-at-top
  # Our frames are small: OpenCV's own thread pool would fight JAX and FFmpeg for the cores.
  cv2.setNumThreads(1)
  return cv2


def to_uint8_l(l: np.ndarray) -> np.ndarray:
  """L in [0, 100] -> uint8 in [0, 255], the input DIS takes."""
  return np.clip(np.asarray(l, np.float32) * 2.55 + 0.5, 0, 255).astype(np.uint8)


class DenseFlow:
  """Dense optical flow between uint8 gray images: `flow(a, b)` gives, for every pixel x of a,
  the displacement d with a(x) ~ b(x + d)."""

  def __init__(self, method: str = "dis_medium"):
    cv2 = _cv2()
    self.method = method
    if method.startswith("dis_"):
      presets = {"dis_ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                 "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                 "dis_medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
      if method not in presets:
        raise ValueError(f"unknown flow method {method!r}; one of {sorted(presets)}, "
                         "farneback, ilk")
      self._dis = cv2.DISOpticalFlow_create(presets[method])
    elif method not in ("farneback", "ilk"):
      raise ValueError(f"unknown flow method {method!r}")

  def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    if self.method.startswith("dis_"):
      return self._dis.calc(a, b, None)
    if self.method == "farneback":
      # Farneback (2003) with OpenCV's commonly used settings (pyramid 0.5, 3 levels, 15 px).
      return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    from skimage.registration import optical_flow_ilk  # pylint: disable=g-import-not-at-top
    # skimage returns (row, col) flow such that b(x + v) ~ a(x) for (reference a, moving b).
    v, u = optical_flow_ilk(a.astype(np.float32), b.astype(np.float32), radius=7)
    return np.stack([u, v], axis=-1).astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(image sampled at x + flow(x), bilinear; mask of x + flow(x) inside the image)."""
  cv2 = _cv2()
  h, w = flow.shape[:2]
  gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
  mx, my = gx + flow[..., 0], gy + flow[..., 1]
  out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
  return out, inside


def fb_inconsistency(back: np.ndarray, fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Forward-backward check of Sundaram et al. 2010 for the backward flow `back` (t -> t-1)
  and the forward flow `fwd` (t-1 -> t): (|back + fwd(x + back)|^2, the check's tolerance
  0.01 (|back|^2 + |fwd(x + back)|^2) + 0.5) per pixel of frame t."""
  fwd_at, _ = warp(fwd, back)
  err = np.sum(np.square(back + fwd_at), axis=-1)
  tol = 0.01 * (np.sum(np.square(back), axis=-1) + np.sum(np.square(fwd_at), axis=-1)) + 0.5
  return err, tol


def l_histogram(l: np.ndarray) -> np.ndarray:
  """Normalised 32-bin histogram of L in [0, 100]."""
  hist, _ = np.histogram(l, bins=_HIST_BINS, range=(0.0, 100.0))
  return hist / max(1, hist.sum())


def histogram_change(a: np.ndarray, b: np.ndarray) -> float:
  """Total variation distance in [0, 1] between two normalised histograms."""
  return 0.5 * float(np.abs(a - b).sum())


# ------------------------------------------------------------------------------------------
# Temporal smoothing of ab.
# ------------------------------------------------------------------------------------------
def blend_ab(ab: np.ndarray, warped: np.ndarray, weight: np.ndarray,
             keep_saturation: bool = True) -> np.ndarray:
  """(1 - weight) * ab + weight * warped; with `keep_saturation`, the blend's chroma |ab| is
  set to the same blend of the two chromas. Averaging ab vectors whose hues disagree shortens
  them (a red and a green prediction average to gray), which would desaturate exactly the
  flickering regions; blending hue and chroma separately keeps their saturation."""
  out = ab + weight * (warped - ab)
  if not keep_saturation:
    return out
  chroma = np.linalg.norm(ab, axis=-1, keepdims=True)
  chroma_warped = np.linalg.norm(warped, axis=-1, keepdims=True)
  target = chroma + weight * (chroma_warped - chroma)
  length = np.linalg.norm(out, axis=-1, keepdims=True)
  return np.where(length > 1e-6, out * (target / np.maximum(length, 1e-6)), out)


class TemporalSmoother:
  """Motion-compensated recursive smoothing of per-frame ab predictions (see the module doc).

  Feed frames in order: `smoother(l, ab)` with L (h, w) in [0, 100] and ab (h, w, 2) (any
  units) at one work resolution; returns the smoothed ab. After each call, `last_cut` says
  whether the frame was detected as a scene cut and `last_confidence` is the mean blending
  confidence (0 at a reset).
  """

  def __init__(self, strength: float = DEFAULT_STRENGTH,
               cut_threshold: float = DEFAULT_CUT_THRESHOLD, sigma_l: float = 4.0,
               flow_method: str = "dis_medium", keep_saturation: bool = True):
    if not 0.0 <= strength <= 1.0:
      raise ValueError(f"temporal smoothing strength must be in [0, 1], got {strength}")
    self.strength = float(strength)
    self.cut_threshold = float(cut_threshold)
    # L agreement scale: H.264 at CRF 18 and bilinear warping leave errors of 1-2 L units on
    # well-tracked pixels; a few units more mean the warp landed on other content.
    self.sigma_l = float(sigma_l)
    self.flow = DenseFlow(flow_method)
    self.keep_saturation = keep_saturation
    self.reset()

  def reset(self) -> None:
    self._prev_l8: np.ndarray | None = None
    self._prev_l: np.ndarray | None = None
    self._prev_hist: np.ndarray | None = None
    self._prev_ab: np.ndarray | None = None
    self.last_cut = False
    self.last_confidence = 0.0

  def confidence(self, l: np.ndarray, l8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-pixel confidence in [0, 1], backward flow t -> t-1) against the previous frame."""
    back = self.flow(l8, self._prev_l8)
    fwd = self.flow(self._prev_l8, l8)
    warped_l, inside = warp(self._prev_l, back)
    photometric = np.exp(-np.square(l - warped_l) / (2.0 * self.sigma_l ** 2))
    err, tol = fb_inconsistency(back, fwd)
    consistent = np.exp(-err / tol)
    return (photometric * consistent * inside).astype(np.float32), back

  def __call__(self, l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    l = np.asarray(l, np.float32)
    ab = np.asarray(ab, np.float32)
    hist = l_histogram(l)
    l8 = to_uint8_l(l)
    self.last_cut = (self._prev_hist is not None and
                     histogram_change(hist, self._prev_hist) > self.cut_threshold)
    if self._prev_ab is None or self.last_cut or self.strength == 0.0:
      out, self.last_confidence = ab, 0.0
    else:
      conf, back = self.confidence(l, l8)
      # Bilinear: bicubic (sharper) measured a higher warping error on the test clips.
      warped_ab, _ = warp(self._prev_ab, back)
      weight = (self.strength * conf)[..., None]
      out = blend_ab(ab, warped_ab, weight, self.keep_saturation)
      self.last_confidence = float(conf.mean())
    self._prev_l8, self._prev_l, self._prev_hist, self._prev_ab = l8, l, hist, out
    return out


# ------------------------------------------------------------------------------------------
# Measuring flicker and fidelity.
# ------------------------------------------------------------------------------------------
def _lab(rgb: np.ndarray) -> np.ndarray:
  from colorjax.color import lab  # pylint: disable=g-import-not-at-top
  return np.asarray(lab.rgb_to_lab(jnp.asarray(rgb, jnp.float32) / 255.0))


class FlickerMeter:
  """Accumulates, over the frames of a video in order, the warping error of Lai et al. 2018 and
  fidelity to the original colour frames.

  `add(original, output, cut=False)` takes uint8 RGB (H, W, 3) frames. The warping error of
  frame t is the mean Euclidean ab distance (Lab units) between output t and output t-1 warped
  to t, over the pixels that are not occluded; the flow is computed on the *original* frames,
  at full resolution, occlusion by the forward-backward check of Sundaram et al. 2010. Lai et
  al. used FlowNet2; here DIS ("medium"), which on the pan and zoom test clips at 480p is off
  the true motion by 0.12 / 0.27 px on average, where Farneback (2003) is off by 2.5 / 1.3 px
  (benchmarks/README.md, "Videos"). The smoother also uses DIS, but on a 256 px copy; where the
  true motion is known, pass it as `true_flow` (backward, t -> t-1, in pixels) for a measure
  that depends on no estimate at all. Pairs across a scene cut (`cut=True` on the first frame
  after it) are left out. Lai et al.'s own form, the mean squared RGB difference on [0, 1]
  (E_warp), is reported too.
  """

  def __init__(self, flow_method: str = "dis_medium"):
    self.flow = DenseFlow(flow_method)
    self.ab_errors: list[float] = []
    self.rgb_errors: list[float] = []
    self.psnrs: list[float] = []
    self.cf_output: list[float] = []
    self.cf_original: list[float] = []
    self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

  def add(self, original: np.ndarray, output: np.ndarray, cut: bool = False,
          true_flow: np.ndarray | None = None) -> None:
    from colorjax.evals import metrics  # pylint: disable=g-import-not-at-top
    orig_lab, out_lab = _lab(original), _lab(output)
    both = jnp.asarray(np.stack([output, original]), jnp.float32) / 255.0
    self.psnrs.append(float(metrics.psnr(both[:1], both[1:])[0]))
    cf = np.asarray(metrics.colorfulness(both))
    self.cf_output.append(float(cf[0]))
    self.cf_original.append(float(cf[1]))
    orig8 = to_uint8_l(orig_lab[..., 0])
    if self._prev is not None and not cut:
      prev8, prev_out_ab, prev_out = self._prev
      if true_flow is None:
        back = self.flow(orig8, prev8)
        err, tol = fb_inconsistency(back, self.flow(prev8, orig8))
        visible = err <= tol
      else:
        back, visible = true_flow.astype(np.float32), True
      warped_ab, inside = warp(prev_out_ab, back)
      warped_rgb, _ = warp(prev_out.astype(np.float32) / 255.0, back)
      valid = inside & visible
      if valid.any():
        dist = np.linalg.norm(out_lab[..., 1:] - warped_ab, axis=-1)
        self.ab_errors.append(float(dist[valid].mean()))
        sq = np.sum(np.square(output.astype(np.float32) / 255.0 - warped_rgb), axis=-1)
        self.rgb_errors.append(float(sq[valid].mean()))
    self._prev = (orig8, out_lab[..., 1:].astype(np.float32), output)

  def summary(self) -> dict[str, float]:
    return {"warp_error_ab": float(np.mean(self.ab_errors)) if self.ab_errors else float("nan"),
            "warp_error_rgb": float(np.mean(self.rgb_errors)) if self.rgb_errors else float("nan"),
            "psnr": float(np.mean(self.psnrs)),
            "colorfulness": float(np.mean(self.cf_output)),
            "colorfulness_original": float(np.mean(self.cf_original)),
            "frames": len(self.psnrs)}


# ------------------------------------------------------------------------------------------
# Reading and writing video (PyAV).
# ------------------------------------------------------------------------------------------
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


def _open_input(src: str):
  import av  # pylint: disable=g-import-not-at-top
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


def _video_codec(dst: str, width: int, height: int) -> tuple[str, str, dict[str, str]]:
  """(codec, pixel format, options) for the destination's container and the frame size."""
  import av  # pylint: disable=g-import-not-at-top
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


def _decode(container, vstream, audio_out: dict, mux: Callable[[Any], None],
            problems: list[str], state: dict) -> Iterator[Any]:
  """Yields decoded video frames; copies audio packets to their output streams as they come.
  Undecodable packets are skipped and recorded; a demuxing error ends the stream.
  `state["data_end"]` is the latest end time (s) of any packet read: where the file's data
  stops, which for a truncated file is before the duration its header promises."""
  import av  # pylint: disable=g-import-not-at-top
  packets = container.demux(vstream, *audio_out)
  while True:
    try:
      packet = next(packets)
    except StopIteration:
      return
    except av.error.FFmpegError as e:
      problems.append(f"reading stopped: {e.strerror or e}")
      return
    if packet.pts is not None and packet.time_base is not None:
      end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
      state["data_end"] = max(state["data_end"], end)
    if packet.stream.type == "audio":
      if packet.dts is not None:  # Demuxers end each stream with an empty flush packet.
        packet.stream = audio_out[packet.stream]
        mux(packet)
      continue
    try:
      frames = packet.decode()
    except av.error.FFmpegError as e:
      problems.append(f"undecodable packet at pts {packet.pts}: {e.strerror or e}")
      continue
    yield from frames


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
               smoother: TemporalSmoother | None, work_size: int):
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
                   temporal_smoothing: float = DEFAULT_STRENGTH,
                   work_size: int = DEFAULT_WORK_SIZE,
                   cut_threshold: float = DEFAULT_CUT_THRESHOLD,
                   progress: bool = True,
                   on_frame: Callable[[np.ndarray, np.ndarray, bool], None] | None = None
                   ) -> VideoResult:
  """Colorizes the video `src` into `dst` (see the module doc).

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
  import av  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if not 0.0 <= temporal_smoothing <= 1.0:
    raise ValueError(f"temporal_smoothing must be in [0, 1], got {temporal_smoothing}")
  if os.path.exists(dst) and os.path.samefile(src, dst):
    raise ValueError(f"output {dst} is the input; refusing to overwrite it")
  start_time = time.perf_counter()
  container = _open_input(src)
  try:
    # FFmpeg picks the muxer from the temporary name's extension.
    with files.atomic_path(dst, suffix=os.path.splitext(dst)[1]) as tmp:
      vin = container.streams.video[0]
      vin.thread_type = "AUTO"
      ain = list(container.streams.audio)
      width, height = vin.codec_context.width, vin.codec_context.height
      rate = vin.average_rate or vin.guessed_rate or fractions.Fraction(25)
      expected, exact = _expected_frames(vin, container)
      duration, start = (container.duration or 0) / 1e6, (container.start_time or 0) / 1e6
      codec, pix_fmt, options = _video_codec(dst, width, height)
      out = av.open(tmp, "w")
      try:
        vout = out.add_stream(codec, rate=rate, options=options)
        vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        try:
          audio_out = {s: out.add_stream_from_template(s) for s in ain}
        except (ValueError, av.error.FFmpegError) as e:
          raise ValueError(f"cannot copy the audio of {src} into {os.path.basename(dst)}: {e}; "
                           "use the input's container (extension)") from e
        smoother = (TemporalSmoother(temporal_smoothing, cut_threshold)
                    if temporal_smoothing > 0 else None)
        problems: list[str] = []
        state = {"last_pts": None, "rotation": None, "written": 0, "last_time": 0.0,
                 "data_end": 0.0}
        colorizing: _Colorizing | None = None

        def encode(frames: list[Any]) -> None:
          nonlocal colorizing
          arrays = np.stack([_upright(f, state) for f in frames])
          if colorizing is None:  # Sized by the first frame, upright.
            colorizing = _Colorizing(colorizer, arrays.shape[1], arrays.shape[2], smoother,
                                     work_size)
          results = colorizing(arrays)
          for frame, array, result in zip(frames, arrays, results):
            index = state["written"]
            if on_frame is not None:
              on_frame(array, result, index in colorizing.cuts)
            new = av.VideoFrame.from_ndarray(_turn_back(result, state["rotation"]), "rgb24")
            # RGB -> YUV with the matrix and range the input was decoded with (PyAV decodes by the
            # frame's tags): L survives the round trip, and the output carries the same tags.
            new = new.reformat(format=pix_fmt, **state["matrix"])
            new.pts = _monotonic_pts(frame, state, rate, vin.time_base)
            new.time_base = vin.time_base
            for packet in vout.encode(new):
              out.mux(packet)
            state["written"] += 1
            state["last_time"] = float(new.pts * vin.time_base)
          bar.update(len(frames))

        with tqdm(total=expected, unit="frame", disable=not progress, file=sys.stderr,
                  desc=os.path.basename(src)) as bar:
          pending: list[Any] = []
          for frame in _decode(container, vin, audio_out, out.mux, problems, state):
            if state["rotation"] is None:
              state["rotation"] = int(round((frame.rotation or 0) / 90.0)) % 4
              if state["rotation"]:
                vout.set_display_rotation(90 * state["rotation"])
              state["matrix"] = _copy_colour_tags(frame, vin.codec_context, vout.codec_context)
            pending.append(frame)
            if len(pending) == colorizer.batch_size:
              encode(pending)
              pending = []
          if pending:
            encode(pending)
          for packet in vout.encode(None):
            out.mux(packet)
      finally:
        out.close()
      if state["written"] == 0:
        raise ValueError(f"no frame of {src} could be decoded"
                         + (f" ({problems[0]})" if problems else ""))
  finally:
    container.close()
  written = state["written"]
  stopped = None
  # Truncation shows as fewer frames than the index lists (mp4, mov) or, without an index
  # count (mkv, webm), as data that ends before the duration the header promises.
  short_data = duration > 0 and state["data_end"] - start < duration - max(0.2, 2 / float(rate))
  if problems or (exact and written < expected) or (not exact and short_data):
    stopped = (f"{src}: decoding stopped after frame {written} (t = {state['last_time']:.2f} s)"
               + (f" of {expected}" if exact else
                  f" of about {expected}" if expected else "")
               + (f"; {problems[0]}" if problems else "")
               + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
               + f": truncated or damaged input; the {written} frames that decoded were written")
  return VideoResult(dst, written, expected, width, height, float(rate), len(ain),
                     colorizing.cuts if colorizing else [], time.perf_counter() - start_time,
                     stopped)


_UNSPECIFIED = 2  # AVCOL_SPC_UNSPECIFIED, AVCOL_PRI_UNSPECIFIED, AVCOL_TRC_UNSPECIFIED.


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


def _upright(frame, state: dict) -> np.ndarray:
  array = frame.to_ndarray(format="rgb24")
  return np.ascontiguousarray(np.rot90(array, state["rotation"])) if state["rotation"] else array


def _turn_back(array: np.ndarray, rotation: int | None) -> np.ndarray:
  return np.ascontiguousarray(np.rot90(array, -rotation)) if rotation else array


def _monotonic_pts(frame, state: dict, rate: fractions.Fraction, time_base) -> int:
  """The input frame's pts (variable frame rate kept), made strictly increasing as encoders
  require; missing ones continue at the stream's rate."""
  pts = frame.pts
  last = state["last_pts"]
  step = max(1, int(round(1 / (rate * time_base)))) if rate and time_base else 1
  if pts is None:
    pts = 0 if last is None else last + step
  elif last is not None and pts <= last:
    pts = last + 1
  state["last_pts"] = pts
  return pts


def run_jobs(colorizer: inference.Colorizer, jobs: Sequence[tuple[str, str]],
             temporal_smoothing: float = DEFAULT_STRENGTH, progress: bool = True
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
