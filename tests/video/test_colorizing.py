"""Video colorization: real codecs (H.264, VP9, MPEG-4 via PyAV), clips made from real photos,
and a model trained enough that its per-frame colours actually flicker."""

import os

import av
import numpy as np
import pytest
import skimage.color

from colorjax import colorize
from colorjax import inference
from colorjax import train
from colorjax import video
from tests.helpers import video_clips
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # Every test uses a model trained for 120 steps (~25 s set-up).

W, H, N = 192, 108, 20  # Test clips: 16:9, 20 frames at 25 fps.


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  # A 2-step model predicts nearly the same ab for every frame, so it cannot show flicker.
  # 120 steps at 32 px give a model whose colours follow the content, and jump between
  # frames the way real colorizers' do (per-frame warping error 3-5 Lab units on the pan).
  path = str(tmp_path_factory.mktemp("workdir"))
  config = tiny_config("regression_l1")
  config.num_train_steps = 120
  config.data.image_size = 32
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 120
  config.log_every_steps = 60
  config.model.generator_kwargs = {"num_downs": 4, "features": 16, "max_features": 32}
  train.train_and_evaluate(config, path)
  return path


@pytest.fixture(scope="module")
def colorizer(workdir):
  return inference.Colorizer.from_workdir(workdir, batch_size=8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """name -> H.264 .mp4 clip; the pan has a 1 s AAC sine track."""
  folder = tmp_path_factory.mktemp("clips")
  paths = {}
  for name in ("pan", "object", "cut"):
    paths[name] = str(folder / f"{name}.mp4")
    video_clips.write_video(paths[name], video_clips.make_clip(name, W, H, N),
                            audio_seconds=1.0 if name == "pan" else 0.0)
  return paths


def lightness(rgb: np.ndarray) -> np.ndarray:
  return skimage.color.rgb2lab(rgb)[..., 0]


def audio_packets(path: str) -> list[bytes]:
  with av.open(path) as container:
    if not container.streams.audio:
      return []
    return [bytes(p) for p in container.demux(audio=0) if p.size]


def measure(source: str, output: str, cut_at: int | None = None) -> dict[str, float]:
  """Warping error and fidelity of the decoded output against the decoded input."""
  meter = video.FlickerMeter()
  for i, (original, result) in enumerate(zip(video_clips.read_frames(source),
                                             video_clips.read_frames(output))):
    meter.add(original, result, cut=i == cut_at)
  return meter.summary()


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".mkv", ".webm", ".avi"])
def test_round_trip_keeps_size_rate_count_audio_and_lightness(colorizer, tmp_path, ext):
  source = str(tmp_path / f"in{ext}")
  codec = "mpeg4" if ext == ".avi" else None  # AVI: the classic MPEG-4 Part 2 + AAC.
  video_clips.write_video(source, video_clips.make_clip("pan", 96, 64, 12), fps=30,
                          codec=codec, audio_seconds=0.5)
  output = str(tmp_path / f"out{ext}")
  result = video.colorize_video(colorizer, source, output, progress=False)
  assert result.frames == 12 and result.stopped_early is None and result.audio_streams == 1
  with av.open(source) as a, av.open(output) as b:
    va, vb = a.streams.video[0], b.streams.video[0]
    assert (vb.codec_context.width, vb.codec_context.height) == (96, 64)
    assert vb.average_rate == va.average_rate == 30
    assert b.streams.audio[0].codec_context.name == a.streams.audio[0].codec_context.name
  # Audio is copied packet for packet, not re-encoded.
  assert audio_packets(output) == audio_packets(source) and audio_packets(source)
  originals, results = video_clips.read_frames(source), video_clips.read_frames(output)
  assert len(results) == len(originals) == 12
  # Full-resolution L is the input's (up to the codec's rounding); only ab comes from the model.
  diff = np.abs(lightness(results[5]) - lightness(originals[5]))
  assert diff.mean() < 1.5, diff.mean()
  assert not any(name.startswith(".out") for name in os.listdir(tmp_path))  # No temp file left.


# Largest stabilised / per-frame warping-error ratio: the moving object uncovers background
# every frame, where no earlier colour can be carried over (measured 0.74-0.78; pan and cut pass
# 0.7: benchmarks/README.md, "Videos").
@pytest.mark.parametrize("name,cut_at,max_ratio", [("pan", None, 0.7), ("object", None, 0.85),
                                                   ("cut", N // 2, 0.7)])
def test_stabilised_output_flickers_less_at_the_same_fidelity(colorizer, clips, tmp_path, name,
                                                              cut_at, max_ratio):
  per_frame = str(tmp_path / "per_frame.mp4")
  stable = str(tmp_path / "stable.mp4")
  video.colorize_video(colorizer, clips[name], per_frame, temporal_smoothing=0.0, progress=False)
  video.colorize_video(colorizer, clips[name], stable, progress=False)
  a, b = measure(clips[name], per_frame, cut_at), measure(clips[name], stable, cut_at)
  # The per-frame model output flickers, so the comparison means something.
  assert a["warp_error_ab"] > 2.0, a
  assert b["warp_error_ab"] < max_ratio * a["warp_error_ab"], (a, b)
  assert abs(b["psnr"] - a["psnr"]) < 0.5, (a, b)


def test_scene_cut_is_detected_and_resets_the_smoothing(colorizer, clips, tmp_path):
  result = video.colorize_video(colorizer, clips["cut"], str(tmp_path / "cut.mp4"),
                                progress=False)
  assert result.cuts == [N // 2]
  # At the cut the output is the model's prediction alone; without the reset, colours of the
  # previous scene leak into the new one wherever the warp happens to agree.
  frames = video_clips.read_frames(clips["cut"])
  ls = [lightness(f).astype(np.float32) for f in frames[N // 2 - 3:N // 2 + 1]]
  before, after = np.float32([30.0, -20.0]), np.float32([-10.0, 40.0])
  abs_ = [np.broadcast_to(before, l.shape + (2,)) for l in ls[:-1]] + [
      np.broadcast_to(after, ls[-1].shape + (2,))]
  for threshold, resets in ((video.DEFAULT_CUT_THRESHOLD, True), (1.1, False)):
    smoother = video.TemporalSmoother(0.8, cut_threshold=threshold)
    outs = [smoother(l, ab) for l, ab in zip(ls, abs_)]
    assert smoother.last_cut == resets
    leak = np.abs(outs[-1] - abs_[-1]).max()
    assert (leak == 0.0) if resets else (leak > 1.0), leak


@pytest.mark.parametrize("ext,options", [(".mkv", {}), (".mp4", {"movflags": "faststart"})])
def test_truncated_video_writes_the_frames_that_decode(colorizer, tmp_path, ext, options):
  source = str(tmp_path / f"whole{ext}")
  video_clips.write_video(source, video_clips.make_clip("pan", 96, 64, N), audio_seconds=0.8,
                          container_options=options)
  cut = str(tmp_path / f"cut{ext}")
  with open(source, "rb") as f:
    data = f.read()
  with open(cut, "wb") as f:
    f.write(data[:int(len(data) * 0.6)])
  output = str(tmp_path / f"out{ext}")
  result = video.colorize_video(colorizer, cut, output, progress=False)
  assert 0 < result.frames < N
  assert result.stopped_early and f"after frame {result.frames}" in result.stopped_early
  assert len(video_clips.read_frames(output)) == result.frames


def test_unreadable_and_audio_only_inputs_fail_with_one_line(colorizer, tmp_path):
  whole = str(tmp_path / "whole.mp4")
  video_clips.write_video(whole, video_clips.make_clip("pan", 96, 64, 8))
  broken = str(tmp_path / "broken.mp4")  # Index (moov) at the end, cut off: nothing decodes.
  with open(whole, "rb") as f, open(broken, "wb") as g:
    g.write(f.read()[:2000])
  with pytest.raises(ValueError, match="cannot read .*broken.mp4 as a video"):
    video.colorize_video(colorizer, broken, str(tmp_path / "out.mp4"), progress=False)
  sound = str(tmp_path / "sound.m4a")
  with av.open(sound, "w", format="mp4") as out:
    video_clips._write_sine(out, video_clips._add_audio(out, False), 0.3)  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="has no video stream"):
    video.colorize_video(colorizer, sound, str(tmp_path / "out2.mp4"), progress=False)
  with pytest.raises(FileNotFoundError, match="no such video file"):
    video.colorize_video(colorizer, str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"))
  assert not os.path.exists(tmp_path / "out.mp4")


def test_odd_size_variable_rate_and_rotation_are_kept(colorizer, tmp_path):
  # 65x49: 4:2:0 cannot hold it, the input is 4:4:4 H.264 and so is the output.
  odd = str(tmp_path / "odd.mkv")
  video_clips.write_video(odd, video_clips.make_clip("object", 65, 49, 6), pix_fmt="yuv444p")
  video.colorize_video(colorizer, odd, str(tmp_path / "odd_out.mkv"), progress=False)
  with av.open(str(tmp_path / "odd_out.mkv")) as c:
    s = c.streams.video[0]
    assert (s.codec_context.width, s.codec_context.height, s.codec_context.pix_fmt) == (
        65, 49, "yuv444p")

  # Variable frame rate: every timestamp is copied.
  pts = [0, 1, 2, 5, 6, 10, 11, 12]
  vfr = str(tmp_path / "vfr.mp4")
  video_clips.write_video(vfr, video_clips.make_clip("pan", 96, 64, len(pts)), pts=pts,
                          time_base=video_clips.fractions.Fraction(1, 25))
  video.colorize_video(colorizer, vfr, str(tmp_path / "vfr_out.mp4"), progress=False)

  def times(path):
    with av.open(path) as c:
      return [round(float(f.time), 3) for f in c.decode(video=0)]
  assert times(str(tmp_path / "vfr_out.mp4")) == times(vfr) == [p / 25 for p in pts]

  # Rotation: kept as metadata; the model sees the frames upright.
  frames = list(video_clips.make_clip("pan", 96, 64, 6))
  rotated, upright = str(tmp_path / "rot.mp4"), str(tmp_path / "up.mp4")
  # Coded sideways (as phones store portrait video), displayed upright by the 90-degree matrix;
  # lossless, so both inputs hold the same pictures.
  video_clips.write_video(rotated, [np.ascontiguousarray(np.rot90(f, -1)) for f in frames],
                          rotation=90, pix_fmt="yuv444p", crf=0)
  video_clips.write_video(upright, frames, pix_fmt="yuv444p", crf=0)
  seen = {"rot": [], "up": []}
  for name, path in (("rot", rotated), ("up", upright)):
    video.colorize_video(colorizer, path, str(tmp_path / f"{name}_out.mp4"), progress=False,
                         on_frame=lambda frame, out, cut, name=name: seen[name].append(out))
  assert np.abs(np.float32(seen["rot"]) - np.float32(seen["up"])).mean() < 1.0
  with av.open(str(tmp_path / "rot_out.mp4")) as c:
    first = next(c.decode(video=0))
    assert first.rotation == 90 and (first.width, first.height) == (64, 96)


def test_colour_tags_are_kept(colorizer, tmp_path):
  """A BT.709 full-range input comes out BT.709 full range, encoded with that matrix."""
  source = str(tmp_path / "hd.mp4")
  frames = list(video_clips.make_clip("pan", 96, 64, 4))
  with av.open(source, "w") as out:
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
    ctx = stream.codec_context
    ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = 1, 2, 1, 1
    for frame in frames:
      yuv = av.VideoFrame.from_ndarray(frame, "rgb24").reformat(
          format="yuv420p", dst_colorspace=1, dst_color_range=2)
      for packet in stream.encode(yuv):
        out.mux(packet)
    for packet in stream.encode(None):
      out.mux(packet)
  output = str(tmp_path / "hd_out.mp4")
  video.colorize_video(colorizer, source, output, progress=False)
  with av.open(output) as c:
    first = next(c.decode(video=0))
    assert (first.colorspace, first.color_range) == (1, 2)
    assert c.streams.video[0].codec_context.color_primaries == 1
  diff = np.abs(lightness(video_clips.read_frames(output)[2]) -
                lightness(video_clips.read_frames(source)[2]))
  assert diff.mean() < 1.5, diff.mean()


def test_cli_colorizes_a_video_next_to_photos(workdir, clips, tmp_path, capsys):
  out = tmp_path / "out"
  code = colorize.main(["--workdir", workdir, clips["pan"], "-o", str(out), "--no_progress",
                        "--temporal_smoothing=0.5"])
  assert code == 0, capsys.readouterr()
  assert sorted(os.listdir(out)) == ["pan_color.mp4"]
  assert len(video_clips.read_frames(str(out / "pan_color.mp4"))) == N
  assert "written: 1, skipped: 0" in capsys.readouterr().out
  assert colorize.parse_args(["--workdir", "w", "a.mp4", "-o", "o",
                              "--no_temporal"]).temporal_smoothing == 0.0
