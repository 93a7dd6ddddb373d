"""The colorize command (colorjax/colorize.py) on real photos, a corpus of bad files and hints
files. The Colorizer's Python API: tests/test_inference.py."""

import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import skimage.color
import skimage.data
from PIL import Image

from colorjax import colorize

pytestmark = pytest.mark.slow  # Every test uses a trained model (trained_tiny, hints_workdir).


@pytest.fixture(scope="module")
def workdir(trained_tiny):
  return trained_tiny("lsgan")


def _png_with_declared_size(width: int, height: int) -> bytes:
  """A real 16x16 PNG whose IHDR claims width x height (a decompression-bomb header)."""
  buffer = io.BytesIO()
  Image.new("L", (16, 16)).save(buffer, format="PNG")
  data = bytearray(buffer.getvalue())
  ihdr = 8 + 8  # Signature, then length + b"IHDR".
  data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
  data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
  return bytes(data)


def _jpeg(image: Image.Image, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", quality=90, **kwargs)
  return buffer.getvalue()


def _corpus(root) -> tuple[dict[str, tuple[int, int, int]], dict[str, str]]:
  """Writes good and bad files; returns ({good: (h, w, channels)}, {bad: reason})."""
  astronaut = Image.fromarray(skimage.data.astronaut()[:180, :240])
  coffee = skimage.data.coffee()[:120, :160]
  (root / "sub").mkdir()
  good, bad = {}, {}

  def write(name, data):
    (root / name).write_bytes(data)

  write("astronaut.jpg", _jpeg(astronaut))
  good["astronaut.jpg"] = (180, 240, 3)
  exif = Image.Exif()
  exif[0x0112] = 6  # Rotate 90 degrees: the output must be upright (240 x 180).
  write("sub/rotated.jpg", _jpeg(astronaut, exif=exif))
  good["sub/rotated.jpg"] = (240, 180, 3)
  write("sub/cmyk.jpg", _jpeg(Image.fromarray(coffee).convert("CMYK")))
  good["sub/cmyk.jpg"] = (120, 160, 3)
  gray16 = (skimage.color.rgb2gray(coffee) * 65535).astype(np.uint16)
  Image.fromarray(gray16).save(root / "gray16.png")
  good["gray16.png"] = (120, 160, 3)
  rgba = np.concatenate([coffee, np.full(coffee.shape[:2] + (1,), 77, np.uint8)], axis=-1)
  Image.fromarray(rgba).save(root / "rgba.png")
  good["rgba.png"] = (120, 160, 4)
  Image.fromarray(coffee).quantize(64).save(root / "palette.png")
  good["palette.png"] = (120, 160, 3)
  Image.new("L", (1, 1), 128).save(root / "pixel.png")
  good["pixel.png"] = (1, 1, 3)

  write("truncated.jpg", _jpeg(astronaut)[:2000])
  bad["truncated.jpg"] = "truncated or corrupt"
  write("empty.jpg", b"")
  bad["empty.jpg"] = "empty file"
  write("notes.jpg", b"this is a text file, not a photo\n" * 20)
  bad["notes.jpg"] = "not an image"
  write("bomb.png", _png_with_declared_size(50_000, 50_000))
  bad["bomb.png"] = "too large"
  return good, bad


def _digests(root) -> dict[str, str]:
  return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def test_command_writes_good_files_and_reports_bad_ones(workdir, tmp_path, capsys):
  photos = tmp_path / "photos"
  photos.mkdir()
  good, bad = _corpus(photos)
  before = _digests(photos)
  out = tmp_path / "out"
  code = colorize.main([str(photos), "-o", str(out), f"--workdir={workdir}", "--no_progress",
                        "--batch_size=4"])
  assert code == 1  # Some inputs failed, the others were written.
  assert _digests(photos) == before  # Inputs untouched.
  for name, shape in good.items():
    result = np.asarray(Image.open(out / (os.path.splitext(name)[0] + "_color.png")))
    assert result.shape == shape, name
  rgba_out = np.asarray(Image.open(out / "rgba_color.png"))
  assert (rgba_out[..., 3] == 77).all()
  report = capsys.readouterr().out
  assert f"written: {len(good)}, skipped: {len(bad)}" in report
  for name, reason in bad.items():
    assert not (out / (os.path.splitext(name)[0] + "_color.png")).exists()
    assert any(name in line and reason in line for line in report.splitlines()), (name, report)


def test_command_never_overwrites_inputs_and_fails_when_nothing_is_written(workdir, tmp_path,
                                                                           capsys):
  folder = tmp_path / "f"
  folder.mkdir()
  photo = Image.fromarray(skimage.data.chelsea()[:64, :64])
  photo.save(folder / "cat.png")
  photo.save(folder / "cat_color.png")  # Would be cat.png's output in the same folder.
  before = _digests(folder)
  jpeg_glob = str(folder / "*.png")
  code = colorize.main([jpeg_glob, "-o", str(folder), f"--workdir={workdir}", "--no_progress",
                        "--format=jpeg"])
  # cat.png -> cat_color.jpg is not an input (format jpeg); now ask for png into the same folder.
  assert code == 0 and (folder / "cat_color.jpg").exists()
  (folder / "cat_color.jpg").unlink()
  code = colorize.main([str(folder / "cat.png"), str(folder / "cat_color.png"), "-o", str(folder),
                        f"--workdir={workdir}", "--no_progress"])
  assert code == 1  # One refused, one written.
  assert _digests(folder).items() >= before.items()  # Both inputs kept byte for byte.
  assert "is an input; refusing to overwrite it" in capsys.readouterr().out
  assert (folder / "cat_color_color.png").exists()

  (tmp_path / "bad.jpg").write_bytes(b"")
  assert colorize.main([str(tmp_path / "bad.jpg"), str(tmp_path / "missing*.jpg"), "-o",
                        str(tmp_path / "o2"), f"--workdir={workdir}", "--no_progress"]) == 2
  report = capsys.readouterr().out
  assert "written: 0, skipped: 2" in report and "no such file" in report


def test_rerun_keeps_earlier_outputs_unless_overwrite(workdir, tmp_path, capsys):
  photos = tmp_path / "photos"
  photos.mkdir()
  Image.fromarray(skimage.data.chelsea()[:64, :80]).save(photos / "cat.png")
  Image.fromarray(skimage.data.coffee()[:64, :80]).save(photos / "cup.jpg")
  out = tmp_path / "out"
  args = [str(photos), "-o", str(out), f"--workdir={workdir}", "--no_progress"]
  assert colorize.main(args) == 0
  assert sorted(os.listdir(out)) == ["cat_color.png", "cup_color.png"]  # PNG for any input.
  capsys.readouterr()
  (out / "cat_color.png").write_bytes(b"an earlier result")  # Not the model's output.
  assert colorize.main(args) == 0  # Every input has its output: nothing failed.
  report = capsys.readouterr().out
  assert "written: 0, skipped: 0, kept: 2" in report and "--overwrite" in report
  assert (out / "cat_color.png").read_bytes() == b"an earlier result"
  assert colorize.main(args + ["--overwrite"]) == 0
  assert "written: 2, skipped: 0" in capsys.readouterr().out
  assert np.asarray(Image.open(out / "cat_color.png")).shape == (64, 80, 3)


def test_colorize_command_reads_hints_files(hints_workdir, tmp_path, capsys):
  photo = tmp_path / "cat.png"
  Image.fromarray(skimage.data.chelsea()[:120, :160]).save(photo)
  good = tmp_path / "hints.json"
  good.write_text(json.dumps({"cat.png": [[80, 60, [0, 200, 0]], [10, 10, "#c02030"]]}))
  out = tmp_path / "out"
  assert colorize.main([f"--workdir={hints_workdir}", str(photo), f"-o={out}",
                        f"--hints={good}", "--no_progress"]) == 0
  hinted = np.asarray(Image.open(out / "cat_color.png"))
  assert colorize.main([f"--workdir={hints_workdir}", str(photo), f"-o={out}", "--overwrite",
                        "--no_progress"]) == 0
  assert not np.array_equal(hinted, np.asarray(Image.open(out / "cat_color.png")))
  capsys.readouterr()
  for content, message in [("{not json", "not JSON"),
                           (json.dumps({"dog.png": []}), "names no input"),
                           (json.dumps({"cat.png": [[1, 2, [0, 0]]]}), "colour"),
                           (json.dumps([1, 2]), "must be an object")]:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert colorize.main([f"--workdir={hints_workdir}", str(photo), f"-o={out}", "--overwrite",
                          f"--hints={bad}", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
