"""Tests for colorjax.data.images: decoding odd files, listing folders."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile
from skimage import data

from colorjax.data import images


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  img.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
  """A PNG written by hand, for what Pillow cannot write (16-bit RGB, bombs)."""

  def chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

  header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
          + chunk(b"IEND", b""))


def png16_rgb(rgb16: np.ndarray) -> bytes:
  """A 16-bit-per-channel RGB PNG (Pillow cannot write these itself)."""
  height, width, _ = rgb16.shape
  raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
  return png_bytes(width, height, 16, 2, raw)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
  return data.chelsea()  # 300x451 RGB


def test_rgb_jpeg_is_color(chelsea):
  decoded = images.read_image(encode(Image.fromarray(chelsea), "JPEG", quality=95))
  assert decoded.mode == "RGB"
  assert decoded.rgb.shape == chelsea.shape and decoded.rgb.dtype == np.uint8
  assert decoded.alpha is None and decoded.rgb16 is None
  assert not decoded.is_grayscale
  # JPEG at q95 stays close to the source.
  assert np.abs(decoded.rgb.astype(int) - chelsea).mean() < 3


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_formats_decode(fmt, chelsea):
  decoded = images.read_image(encode(Image.fromarray(chelsea), fmt))
  assert decoded.rgb.shape == chelsea.shape
  if fmt in ("PNG", "BMP", "TIFF"):  # Lossless formats give the exact pixels.
    np.testing.assert_array_equal(decoded.rgb, chelsea)
  assert not decoded.is_grayscale


def test_reads_from_path(tmp_path, chelsea):
  path = tmp_path / "cat.png"
  Image.fromarray(chelsea).save(path)
  np.testing.assert_array_equal(images.read_image(path).rgb, chelsea)
  np.testing.assert_array_equal(images.read_image(str(path)).rgb, chelsea)


def test_exif_orientation_is_applied(chelsea):
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: stored rotated, display rotated 90° clockwise.
  stored = Image.fromarray(chelsea)
  decoded = images.read_image(encode(stored, "PNG", exif=exif))
  assert decoded.rgb.shape == (chelsea.shape[1], chelsea.shape[0], 3)
  np.testing.assert_array_equal(decoded.rgb, np.rot90(chelsea, k=-1))


def test_cmyk_jpeg_converts_to_rgb(chelsea):
  decoded = images.read_image(encode(Image.fromarray(chelsea).convert("CMYK"), "JPEG", quality=95))
  assert decoded.mode == "CMYK"
  assert decoded.rgb.shape == chelsea.shape and not decoded.is_grayscale
  assert np.abs(decoded.rgb.astype(int) - chelsea).mean() < 6


def test_sixteen_bit_gray_png_keeps_16_bits():
  gray16 = (data.camera().astype(np.uint32) * 257).astype(np.uint16)
  gray16[0, :4] = [0, 1, 65534, 65535]
  decoded = images.read_image(encode(Image.fromarray(gray16), "PNG"))
  assert decoded.mode.startswith("I")
  assert decoded.is_grayscale
  assert decoded.rgb16.dtype == np.uint16 and decoded.rgb16.shape == gray16.shape + (3,)
  np.testing.assert_array_equal(decoded.rgb16[..., 1], gray16)
  np.testing.assert_array_equal(decoded.rgb[0, :4, 0], [0, 0, 255, 255])
  np.testing.assert_array_equal(decoded.rgb[5:, :, 2], data.camera()[5:])


def test_sixteen_bit_rgb_png_decodes_to_8_bit(chelsea):
  # Random low bytes: the 8-bit result must come from the high byte alone.
  low = np.random.default_rng(0).integers(0, 256, chelsea.shape)
  rgb16 = (chelsea.astype(np.uint16) << 8) + low.astype(np.uint16)
  decoded = images.read_image(png16_rgb(rgb16))
  assert decoded.rgb.dtype == np.uint8 and not decoded.is_grayscale
  np.testing.assert_array_equal(decoded.rgb, chelsea)


def test_rgba_png_splits_alpha(chelsea):
  alpha = np.tile(np.linspace(0, 255, chelsea.shape[1]).astype(np.uint8), (chelsea.shape[0], 1))
  decoded = images.read_image(encode(Image.fromarray(np.dstack([chelsea, alpha])), "PNG"))
  assert decoded.mode == "RGBA"
  np.testing.assert_array_equal(decoded.rgb, chelsea)
  np.testing.assert_array_equal(decoded.alpha, alpha)
  flat = images.composite_on_white(decoded.rgb, decoded.alpha)
  np.testing.assert_array_equal(flat[:, 0], 255)  # Fully transparent -> white.
  np.testing.assert_array_equal(flat[:, -1], chelsea[:, -1])  # Opaque -> unchanged.


def test_palette_png_with_transparency(chelsea):
  palette = Image.fromarray(chelsea).quantize(colors=64)
  palette.info["transparency"] = 0
  decoded = images.read_image(encode(palette, "PNG", transparency=0))
  assert decoded.mode == "P" and not decoded.is_grayscale
  index = np.asarray(palette)
  np.testing.assert_array_equal(decoded.alpha == 0, index == 0)
  np.testing.assert_array_equal(decoded.rgb, np.asarray(palette.convert("RGB")))


def test_palette_png_without_transparency(chelsea):
  palette = Image.fromarray(chelsea).quantize(colors=64)
  decoded = images.read_image(encode(palette, "PNG"))
  assert decoded.alpha is None
  np.testing.assert_array_equal(decoded.rgb, np.asarray(palette.convert("RGB")))


def test_la_png_is_gray_with_alpha():
  gray = data.camera()
  alpha = np.full_like(gray, 200)
  decoded = images.read_image(encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"))
  assert decoded.is_grayscale and decoded.mode == "LA"
  np.testing.assert_array_equal(decoded.alpha, alpha)
  np.testing.assert_array_equal(decoded.rgb, np.repeat(gray[..., None], 3, -1))


def test_grayscale_detection():
  gray = data.camera()
  assert images.read_image(encode(Image.fromarray(gray), "JPEG")).is_grayscale
  # A gray photo stored as RGB, with sensor-like noise of a few levels per channel.
  rng = np.random.default_rng(0)
  noisy = np.clip(gray[..., None] + rng.integers(-4, 5, gray.shape + (3,)), 0, 255)
  decoded = images.read_image(encode(Image.fromarray(noisy.astype(np.uint8)), "PNG"))
  assert decoded.mode == "RGB" and decoded.is_grayscale
  # The same gray photo with a small red patch (2% of its pixels) is colour.
  patched = noisy.astype(np.uint8).copy()
  patched[:72, :72] = [200, 30, 30]
  assert not images.read_image(encode(Image.fromarray(patched), "PNG")).is_grayscale
  for name in ("astronaut", "chelsea", "coffee", "rocket"):
    assert not images.channels_nearly_equal(getattr(data, name)()), name


def test_truncated_jpeg(chelsea, monkeypatch):
  # Even if some other library switched PIL to accept partial decodes.
  monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
  full = encode(Image.fromarray(chelsea), "JPEG")
  for cut in (len(full) // 2, len(full) - 2, 200):
    with pytest.raises(images.ImageError) as info:
      images.read_image(full[:cut])
    assert info.value.reason == "truncated or corrupt", cut


def test_truncated_png(chelsea):
  full = encode(Image.fromarray(chelsea), "PNG")
  with pytest.raises(images.ImageError) as info:
    images.read_image(full[: len(full) * 2 // 3])
  assert info.value.reason == "truncated or corrupt"


def test_empty_and_non_image_files(tmp_path):
  empty = tmp_path / "empty.jpg"
  empty.write_bytes(b"")
  text = tmp_path / "notes.jpg"
  text.write_text("these are my holiday notes, not a photo\n" * 20)
  with pytest.raises(images.ImageError) as info:
    images.read_image(empty)
  assert info.value.reason == "empty file"
  with pytest.raises(images.ImageError) as info:
    images.read_image(text)
  assert info.value.reason == "not an image"
  with pytest.raises(images.ImageError) as info:
    images.read_image(tmp_path / "missing.jpg")
  assert info.value.reason == "unreadable"
  assert isinstance(info.value, ValueError)


def test_tiny_image():
  with pytest.raises(images.ImageError, match=r"too small: 1x1") as info:
    images.read_image(encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"))
  assert info.value.reason == "too small"
  assert images.read_image(
      encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), min_side=1).rgb.shape == (1, 1, 3)


def test_decompression_bomb_is_refused_before_decoding():
  # A PNG header declaring 30000x40000 gray pixels (1.2 GB once decoded) with
  # only its first rows of data: the refusal must come from the header alone.
  bomb = png_bytes(30_000, 40_000, 8, 0, b"\x00" * 30_001 * 4)
  assert len(bomb) < 1_000
  with pytest.raises(images.ImageError, match=r"too large") as info:
    images.read_image(bomb)
  assert info.value.reason == "too large"
  # Below PIL's own limit but above ours.
  with pytest.raises(images.ImageError, match=r"too large: 8000x6000 exceeds max_pixels=") as info:
    images.read_image(png_bytes(8_000, 6_000, 8, 0, b"\x00" * 8_001), max_pixels=40_000_000)
  assert info.value.reason == "too large"
  with pytest.raises(images.ImageError) as info:
    images.read_image(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=9_999)
  assert info.value.reason == "too large"


def test_list_images(tmp_path):
  for rel in ("b/z.JPG", "b/a.png", "a.jpeg", "c/d/e.TIFF", "c/x.webp", "y.bmp", "g.gif",
              "t.tif", "notes.txt", "noext", ".hidden.jpg", ".cache/thumb.jpg", "jpg"):
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b"x")
  (tmp_path / "folder.jpg").mkdir()  # A folder with an image-like name.
  listed = images.list_images(tmp_path)
  assert all(isinstance(p, str) for p in listed)  # Plain strings: grain records pickle them.
  found = [images.relative_key(p, tmp_path) for p in listed]
  assert found == ["a.jpeg", "b/a.png", "b/z.JPG", "c/d/e.TIFF", "c/x.webp", "g.gif",
                   "t.tif", "y.bmp"]
  with pytest.raises(NotADirectoryError):
    images.list_images(tmp_path / "y.bmp")


def test_min_decode_side_decodes_large_jpegs_at_reduced_scale():
  photo = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024)))
  buffer = io.BytesIO()
  Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
  full = images.read_image(buffer.getvalue())
  reduced = images.read_image(buffer.getvalue(), min_decode_side=200)
  assert full.rgb.shape == (1024, 1024, 3)
  assert reduced.rgb.shape == (256, 256, 3)  # 1/4 scale: the smallest with a side >= 200.
  downsampled = np.asarray(Image.fromarray(full.rgb).resize((256, 256), Image.BOX), np.float32)
  assert np.abs(reduced.rgb.astype(np.float32) - downsampled).mean() < 4
  assert images.read_image(buffer.getvalue(), min_decode_side=600).rgb.shape == (1024, 1024, 3)
