"""A real folder of photos (various formats, nested) and broken files, for `prepare`'s tests
(tests/data/test_prepare.py, tests/end_to_end/test_prepare.py), and reading back what it wrote."""

from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image
from skimage import data

# prepare's options for the folder (conftest's `prepared_photo_folder`).
MAX_SIDE = 128
VALIDATION_PERCENT = 30


def _png16_rgb(rgb16: np.ndarray) -> bytes:
  """A 16-bit-per-channel RGB PNG (Pillow cannot write these)."""
  height, width, _ = rgb16.shape
  raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

  def chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))

  header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
          + chunk(b"IEND", b""))


def make_photo_folder(root: pathlib.Path) -> tuple[list[str], dict[str, str]]:
  """Writes real photos (various formats, nested) and broken files.

  Returns:
    (relative paths that must be written, {relative path: skip reason}).
  """
  photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
  formats = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP"), ("tiff", "TIFF")]
  good, skipped = [], {}

  def save(rel: str, img: Image.Image, fmt: str, **kwargs) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kwargs)

  k = 0
  for name, rgb in photos.items():
    height, width, _ = rgb.shape
    crops = [rgb[: height * 3 // 4, : width * 3 // 4], rgb[height // 4:, width // 3:],
             rgb[height // 3: height // 3 + 100, width // 4: width // 4 + 90]]
    for i, crop in enumerate(crops[: 3 if name == "astronaut" else 2]):
      ext, fmt = formats[k % len(formats)]
      k += 1
      rel = f"{'trips/2023' if i else 'home'}/{name}_{i}.{ext.upper() if k % 4 == 0 else ext}"
      save(rel, Image.fromarray(np.ascontiguousarray(crop)), fmt)
      good.append(rel)

  chelsea = data.chelsea()
  save("odd/cmyk.jpg", Image.fromarray(chelsea).convert("CMYK"), "JPEG", quality=90)
  (root / "odd/deep16.png").write_bytes(_png16_rgb(data.coffee().astype(np.uint16) * 257))
  alpha = np.full(chelsea.shape[:2], 255, np.uint8)
  alpha[:, :100] = 0
  save("odd/rgba.png", Image.fromarray(np.dstack([chelsea, alpha])), "PNG")
  save("odd/palette.png", Image.fromarray(data.rocket()).quantize(colors=32), "PNG", transparency=0)
  good += ["odd/cmyk.jpg", "odd/deep16.png", "odd/rgba.png", "odd/palette.png"]

  full = io.BytesIO()
  Image.fromarray(data.astronaut()).save(full, format="JPEG")
  (root / "broken").mkdir()
  (root / "broken/truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
  (root / "broken/empty.jpg").write_bytes(b"")
  (root / "broken/notes.jpg").write_text("not a photo, just a note\n" * 10)
  save("broken/tiny.png", Image.new("RGB", (1, 1), (200, 10, 10)), "PNG")
  panorama = np.ascontiguousarray(np.tile(data.coffee()[:20], (1, 4, 1)))  # 2400x20
  save("broken/panorama.jpg", Image.fromarray(panorama), "JPEG")
  save("gray/camera.jpg", Image.fromarray(data.camera()), "JPEG")
  save("gray/camera_rgb.png", Image.fromarray(data.camera()).convert("RGB"), "PNG")
  save("gray/moon16.png", Image.fromarray(data.moon().astype(np.uint16) * 257), "PNG")
  skipped.update({
      "broken/truncated.jpg": "truncated or corrupt", "broken/empty.jpg": "empty file",
      "broken/notes.jpg": "not an image", "broken/tiny.png": "too small",
      "broken/panorama.jpg": "too small", "gray/camera.jpg": "grayscale",
      "gray/camera_rgb.png": "grayscale", "gray/moon16.png": "grayscale",
  })
  (root / "readme.txt").write_text("ignored: not an image extension")
  return sorted(good), skipped


def read_split(name: str, data_dir: pathlib.Path, split: str,
               decode: bool = True) -> dict[str, np.ndarray | bytes]:
  """{relative path: image} of a split: decoded arrays, or the stored bytes (decode=False) as
  the training pipeline reads them."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  decoders = None if decode else {"image": tfds.decode.SkipDecoding()}
  source = tfds.data_source(name, split=split, data_dir=os.fspath(data_dir), decoders=decoders)
  records = [source[i] for i in range(len(source))]
  return {r["path"].decode() if isinstance(r["path"], bytes) else r["path"]: r["image"]
          for r in records}
