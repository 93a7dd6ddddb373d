"""Video colorization: flicker (warping error) and fidelity, per-frame vs stabilised; frames/s
at 480p and 720p; the optical flow choice; the README's before/after strip.

  python benchmarks/video.py --workdir=/tmp/video_model                 # all tables
  python benchmarks/video.py --workdir=/tmp/video_model --strip docs/video_strip.png

The model: any trained workdir, e.g. `python -m colorjax.main --config=configs/regression_l1.py
--workdir=/tmp/video_model` (600 steps at 64 px on scikit-image's photos). Clips are made from
real photos (tests/helpers/video_clips.py: pan, zoom, cut, moving object), encoded with H.264 (CRF
18); every measure is on the *decoded* output file against the decoded input file.

Tables:
  quality  per clip and smoothing strength: warping error of Lai et al. 2018 on ab (Lab units;
           with estimated flow, and for pan and zoom also with the exact camera motion)
           and their E_warp (mean squared RGB difference, x1000), PSNR (dB) and colourfulness
           (Hasler & Suesstrunk 2003) of the output, colourfulness of the original.
  work     the smoothing resolution (long side): warping error, PSNR, smoothing ms/frame.
  flow     optical flow methods on the pan and zoom clips, where the true motion is known:
           end-point error (px) against it and ms per frame pair, at three work sizes and at
           full resolution (where FlickerMeter measures).
  speed    frames/s of `colorize_video` (decode, model, smoothing, encode, audio copy) at 480p
           and 720p, per-frame and stabilised, compilation excluded (second run of each).
Every row is appended to --out (JSON lines) with the command, device, commit, date and load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import git_commit  # noqa: E402  (benchmarks/common.py)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The test clips (tests/helpers/video_clips.py), not part of the package.
from tests.helpers import video_clips  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"480p": (854, 480), "720p": (1280, 720)}


def environment() -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  return {"benchmark": "video", "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
          "device_kind": device.device_kind, "platform": device.platform,
          "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
          "jax_version": jax.__version__, "git_commit": git_commit()}


def record(out: str, row: dict[str, Any], env: dict[str, Any]) -> None:
  if not out:
    return
  row = {**env, **row, "load_average": os.getloadavg()[0],
         "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")


def cut_index(clip: str, frames: int) -> int | None:
  return frames // 2 if clip == "cut" else None


def measure(source: str, output: str, cut_at: int | None,
            clip: str | None = None) -> dict[str, float]:
  """FlickerMeter's summary; for the pan and zoom clips also `warp_error_ab_true`, the warping
  error with the exact camera motion instead of estimated flow."""
  from colorjax import video
  meter, exact = video.FlickerMeter(), video.FlickerMeter()
  originals, results = video_clips.read_frames(source), video_clips.read_frames(output)
  height, width = originals[0].shape[:2]
  for i, (original, result) in enumerate(zip(originals, results)):
    meter.add(original, result, cut=i == cut_at)
    if clip in ("pan", "zoom"):
      truth = true_backward_flow(clip, width, height, len(originals), i, 1.0) if i else None
      exact.add(original, result, true_flow=truth)
  summary = meter.summary()
  if clip in ("pan", "zoom"):
    summary["warp_error_ab_true"] = exact.summary()["warp_error_ab"]
  return summary


def quality(colorizer, tmp: str, args, env) -> None:
  from colorjax import video
  width, height = SIZES[args.quality_size]
  print(f"\n## quality: {args.quality_size} ({width}x{height}), {args.frames} frames, H.264 CRF 18")
  print(f"| clip | smoothing | warp error ab | (true motion) | E_warp x1000 | PSNR dB | "
        f"colourfulness | original's |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for clip in args.clips.split(","):
    source = os.path.join(tmp, f"{clip}_{height}.mp4")
    video_clips.write_video(source, video_clips.make_clip(clip, width, height, args.frames))
    for strength in (float(s) for s in args.strengths.split(",")):
      output = os.path.join(tmp, "out.mp4")
      video.colorize_video(colorizer, source, output, temporal_smoothing=strength,
                           progress=False)
      m = measure(source, output, cut_index(clip, args.frames), clip)
      true = f"{m['warp_error_ab_true']:.2f}" if "warp_error_ab_true" in m else "-"
      print(f"| {clip} | {strength:g} | {m['warp_error_ab']:.2f} | {true} | "
            f"{1000 * m['warp_error_rgb']:.2f} | {m['psnr']:.2f} | {m['colorfulness']:.1f} | "
            f"{m['colorfulness_original']:.1f} |", flush=True)
      record(args.out, {"table": "quality", "clip": clip, "size": [width, height],
                        "frames": args.frames, "strength": strength, **m}, env)


def work_sizes(colorizer, tmp: str, args, env) -> None:
  from colorjax import video
  width, height = SIZES[args.quality_size]
  print(f"\n## work size: smoothing resolution, strength {video.DEFAULT_STRENGTH}, "
        f"{args.quality_size}")
  print("| clip | work size (long side) | warp error ab | PSNR dB | smoothing ms/frame |")
  print("|---|---:|---:|---:|---:|")
  for clip in ("pan", "object"):
    source = os.path.join(tmp, f"{clip}_{height}.mp4")
    if not os.path.exists(source):
      video_clips.write_video(source, video_clips.make_clip(clip, width, height, args.frames))
    for size in (128, 256, 512):
      spent = []
      original_call = video.TemporalSmoother.__call__

      def timed(self, l, ab, _call=original_call):
        start = time.perf_counter()
        out = _call(self, l, ab)
        spent.append(time.perf_counter() - start)
        return out
      video.TemporalSmoother.__call__ = timed
      try:
        output = os.path.join(tmp, "out.mp4")
        video.colorize_video(colorizer, source, output, work_size=size, progress=False)
      finally:
        video.TemporalSmoother.__call__ = original_call
      m = measure(source, output, None)
      ms = 1000 * float(np.median(spent))
      print(f"| {clip} | {size} | {m['warp_error_ab']:.2f} | {m['psnr']:.2f} | {ms:.1f} |",
            flush=True)
      record(args.out, {"table": "work_size", "clip": clip, "work_size": size,
                        "smoothing_ms": ms, **m}, env)


def true_backward_flow(clip: str, width: int, height: int, frames: int, t: int,
                       scale: float) -> np.ndarray:
  """The exact flow from frame t to t-1 of the pan/zoom clips, at `scale` x the frame size."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  h, w = round(height * scale), round(width * scale)
  gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
  u, v = (gx + 0.5) / scale - 0.5, (gy + 0.5) / scale - 0.5
  if clip == "pan":  # video_clips.pan: the centre moves by travel * width / (frames - 1).
    photo = skimage.data.astronaut()
    zoom = video_clips._base_zoom(photo, width, height)  # pylint: disable=protected-access
    du = photo.shape[1] * 0.2 / (frames - 1) * zoom
    dv = photo.shape[0] * 0.04 / (frames - 1) * zoom
    flow = np.stack([np.full_like(u, du), np.full_like(v, dv)], -1)
  else:  # zoom_in: the zoom grows by factor ** (1 / (frames - 1)) per frame.
    ratio = 1.3 ** (-1 / (frames - 1))
    flow = np.stack([(u - width / 2) * (ratio - 1), (v - height / 2) * (ratio - 1)], -1)
  return (flow * scale).astype(np.float32)


def flows(tmp: str, args, env) -> None:
  import cv2  # pylint: disable=g-import-not-at-top
  from colorjax import video
  from colorjax.video import flicker
  from colorjax.video import flow as flow_lib
  width, height = SIZES[args.quality_size]
  frames = args.frames
  print(f"\n## flow: end-point error vs the true motion (px at the work size), {args.quality_size}"
        f" clips, {frames - 1} pairs")
  print("| clip | work size | method | EPE px | ms/pair |")
  print("|---|---:|---|---:|---:|")
  for clip in ("pan", "zoom"):
    source = os.path.join(tmp, f"{clip}_{height}.mp4")
    if not os.path.exists(source):
      video_clips.write_video(source, video_clips.make_clip(clip, width, height, frames))
    decoded = video_clips.read_frames(source)
    for size in (128, 256, 512, max(width, height)):  # The last: FlickerMeter's flow.
      h, w = video.work_shape_for(height, width, size)
      gray = [flow_lib.to_uint8_l(flicker._lab(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))  # pylint: disable=protected-access
                               [..., 0]) for f in decoded]
      for method in ("dis_ultrafast", "dis_fast", "dis_medium", "farneback", "ilk"):
        if method == "ilk" and size > 256:
          continue  # Minutes per clip; its trend is clear at the smaller sizes.
        flow = video.DenseFlow(method)
        errors, spent = [], []
        for t in range(1, frames):
          start = time.perf_counter()
          estimate = flow(gray[t], gray[t - 1])
          spent.append(time.perf_counter() - start)
          truth = true_backward_flow(clip, width, height, frames, t, w / width)
          border = max(2, w // 32)  # Pixels near the border move in from outside the frame.
          errors.append(float(np.linalg.norm(estimate - truth, axis=-1)
                              [border:-border, border:-border].mean()))
        epe, ms = float(np.mean(errors)), 1000 * float(np.median(spent))
        print(f"| {clip} | {size} | {method} | {epe:.3f} | {ms:.1f} |", flush=True)
        record(args.out, {"table": "flow", "clip": clip, "work_size": size, "method": method,
                          "epe_px": epe, "ms_per_pair": ms}, env)


def speed(colorizer, tmp: str, args, env) -> None:
  from colorjax import video
  print(f"\n## speed: frames/s of colorize_video, {args.speed_frames} frames of the pan clip "
        "with an AAC track, second run (compiled)")
  print("| size | smoothing | frames/s | s/frame |")
  print("|---|---:|---:|---:|")
  for name in args.speed_sizes.split(","):
    width, height = SIZES[name]
    source = os.path.join(tmp, f"speed_{height}.mp4")
    video_clips.write_video(source, video_clips.make_clip("pan", width, height, args.speed_frames),
                            audio_seconds=args.speed_frames / 25)
    for strength in (0.0, video.DEFAULT_STRENGTH):
      output = os.path.join(tmp, "speed_out.mp4")
      video.colorize_video(colorizer, source, output, temporal_smoothing=strength,
                           progress=False)  # Compiles.
      start = time.perf_counter()
      result = video.colorize_video(colorizer, source, output, temporal_smoothing=strength,
                                    progress=False)
      seconds = time.perf_counter() - start
      fps = result.frames / seconds
      print(f"| {name} | {strength:g} | {fps:.2f} | {seconds / result.frames:.3f} |",
            flush=True)
      record(args.out, {"table": "speed", "size": [width, height], "strength": strength,
                        "frames": result.frames, "seconds": seconds, "fps": fps,
                        "batch_size": colorizer.batch_size}, env)


def strip(colorizer, path: str, frames: int = 24) -> None:
  """Gray input | per-frame | stabilised | original, for 4 frames of the moving-object clip and
  the cut clip; a PNG for the README."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  from colorjax import video
  width, height = 256, 144
  picks = (4, 9, 14, 19)
  with tempfile.TemporaryDirectory() as tmp:
    rows: dict[str, list[np.ndarray]] = {"gray input": [], "per frame": [], "stabilised": [],
                                         "original": []}
    for clip in ("object", "pan"):
      source = os.path.join(tmp, f"{clip}.mp4")
      video_clips.write_video(source, video_clips.make_clip(clip, width, height, frames))
      originals = video_clips.read_frames(source)
      for label, strength in (("per frame", 0.0), ("stabilised", video.DEFAULT_STRENGTH)):
        out = os.path.join(tmp, "out.mp4")
        video.colorize_video(colorizer, source, out, temporal_smoothing=strength,
                             progress=False)
        results = video_clips.read_frames(out)
        rows[label] += [results[i] for i in picks]
      rows["original"] += [originals[i] for i in picks]
      rows["gray input"] += [_gray(originals[i]) for i in picks]
  label_w, gap = 92, 4
  cols = len(rows["original"])
  canvas = Image.new("RGB", (label_w + cols * (width + gap), len(rows) * (height + gap)), "white")
  draw = ImageDraw.Draw(canvas)
  for r, (label, images) in enumerate(rows.items()):
    y = r * (height + gap)
    draw.text((6, y + height // 2 - 6), label, fill="black")
    for c, image in enumerate(images):
      canvas.paste(Image.fromarray(np.asarray(image, np.uint8)), (label_w + c * (width + gap), y))
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  canvas.save(path, optimize=True)
  print(f"wrote {path}: frames {picks} of the moving-object and pan clips; rows: "
        f"{', '.join(rows)}")


def _gray(rgb: np.ndarray) -> np.ndarray:
  """sRGB gray with the photo's L (ab = 0)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from colorjax.color import lab  # pylint: disable=g-import-not-at-top
  lab_image = lab.rgb_to_lab(jnp.asarray(rgb, jnp.float32) / 255.0)
  gray = lab.lab_to_rgb(lab_image.at[..., 1:].set(0.0))
  return np.asarray(np.round(np.clip(gray, 0, 1) * 255), np.uint8)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="/tmp/video_model")
  parser.add_argument("--tables", default="quality,work,flow,speed")
  parser.add_argument("--clips", default="pan,zoom,cut,object")
  parser.add_argument("--strengths", default="0,0.5,0.8")
  parser.add_argument("--frames", type=int, default=40)
  parser.add_argument("--quality_size", default="480p", choices=sorted(SIZES))
  parser.add_argument("--speed_sizes", default="480p,720p")
  parser.add_argument("--speed_frames", type=int, default=48)
  parser.add_argument("--strip", default=None, help="write only the before/after PNG here")
  parser.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results.jsonl"))
  args = parser.parse_args()
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  colorizer = inference.Colorizer.from_workdir(args.workdir, batch_size=8)
  print(f"model: {args.workdir} ({colorizer.config.model.generator}, step {colorizer.step}, "
        f"render size {colorizer.render_size}), load average {os.getloadavg()[0]:.1f}")
  if args.strip:
    strip(colorizer, args.strip)
    return
  env = environment()
  tables = args.tables.split(",")
  with tempfile.TemporaryDirectory() as tmp:
    if "quality" in tables:
      quality(colorizer, tmp, args, env)
    if "work" in tables:
      work_sizes(colorizer, tmp, args, env)
    if "flow" in tables:
      flows(tmp, args, env)
    if "speed" in tables:
      speed(colorizer, tmp, args, env)
  print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  sys.exit(main())
