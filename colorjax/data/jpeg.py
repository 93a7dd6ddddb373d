"""The training pipeline's fast path for colour JPEGs: the header read without PIL
(`read_jpeg_header`, about a microsecond) and the pixels decoded at the DCT scale the crop needs
(`decode_jpeg_reduced`, libjpeg-turbo through simplejpeg). Anything this path does not take
(other formats, gray or CMYK JPEGs, incomplete files) goes to `images.read_image`, with the same
`ImageError`s for files that are too large or too small.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import simplejpeg

from colorjax.data import images
from colorjax.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, ImageError


@dataclasses.dataclass(frozen=True)
class JpegHeader:
  """What a colour JPEG's header says, read before any decoding.

  Attributes:
    width, height: the upright size (after EXIF orientation).
    orientation: the EXIF orientation tag, 1-8 (1: stored upright).
  """
  width: int
  height: int
  orientation: int


# The EXIF orientations as numpy views of the stored (H, W, C) array: what
# `ImageOps.exif_transpose` does, without copying the image.
_UPRIGHT_VIEWS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a[::-1].transpose(1, 0, 2),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: a[:, ::-1].transpose(1, 0, 2),
}


def read_jpeg_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     min_side: int = DEFAULT_MIN_SIDE) -> JpegHeader | None:
  """The header of a complete colour (YCbCr) JPEG that `decode_jpeg_reduced` reads; None for
  anything else (other formats, gray or CMYK JPEGs, a file without its end marker), which
  `read_image` handles with its full checks.

  Raises:
    ImageError: as `read_image` does for files that are too large or too small.
  """
  # A complete file ends with EOI; anything else (truncated, or trailing bytes) goes to PIL,
  # which refuses truncated files.
  if not data.startswith(b"\xff\xd8") or not data.endswith(b"\xff\xd9"):
    return None
  try:  # libjpeg-turbo's header parse: about a microsecond, PIL's open about 30.
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
  except ValueError:
    return None
  if colorspace != "YCbCr":
    return None
  if width * height > max_pixels:
    raise ImageError(
        "too large", f"too large: {width}x{height} exceeds max_pixels={max_pixels}")
  orientation = _exif_orientation(data, max_pixels)
  if orientation >= 5:
    width, height = height, width
  if min(width, height) < min_side:
    raise ImageError("too small", f"too small: {width}x{height} (min_side={min_side})")
  return JpegHeader(width=width, height=height, orientation=orientation)


def _exif_orientation(data: bytes, max_pixels: int) -> int:
  """The EXIF orientation (1-8) of a JPEG; 1 without EXIF (checked without PIL), or for a
  malformed or unknown tag, whose pixels `read_image` keeps unrotated too."""
  if not _has_exif_segment(data):
    return 1
  try:
    orientation = int(images.open_image(data, max_pixels).getexif().get(0x0112, 1))
  except Exception:  # Malformed EXIF.
    return 1
  return orientation if orientation in _UPRIGHT_VIEWS else 1


def _has_exif_segment(data: bytes) -> bool:
  """Whether the APPn/COM segments after SOI hold an APP1 Exif one: a few byte reads, where
  PIL's open and `getexif` cost tens of microseconds."""
  pos = 2
  while pos + 10 <= len(data) and data[pos] == 0xFF:
    marker = data[pos + 1]
    if not (0xE0 <= marker <= 0xEF or marker == 0xFE):  # The first non-APP segment.
      return False
    if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
      return True
    pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
  return False


def decode_jpeg_reduced(data: bytes, header: JpegHeader, reduction: int) -> np.ndarray:
  """A colour JPEG decoded at 1/`reduction` (1, 2, 4 or 8) of its size, as an upright uint8
  RGB view (not necessarily contiguous).

  libjpeg's DCT scaling computes the smaller image directly from the frequency coefficients
  (several times faster than a full decode, and a proper low-pass, not a subsample).
  simplejpeg's libjpeg-turbo decodes with the accurate integer IDCT and smooth chroma
  upsampling, PIL's settings (the same pixels as PIL's `draft` decode), about 10% faster than
  OpenCV's `imdecode` (benchmarks/README.md, input pipeline), and raises on a truncated file.
  """
  stored_h, stored_w = ((header.width, header.height) if header.orientation >= 5
                        else (header.height, header.width))
  try:
    # min_factor keeps libjpeg-turbo to the 1/k scales: its M/8 ones (3/8, 5/8, ...) use
    # plain C IDCTs, slower than the full-size SIMD decode (measured).
    decoded = simplejpeg.decode_jpeg(
        data, colorspace="RGB", min_height=math.ceil(stored_h / reduction),
        min_width=math.ceil(stored_w / reduction), min_factor=reduction, strict=True)
  except ValueError as e:
    raise ImageError("truncated or corrupt", f"truncated or corrupt: {e}") from e
  return _UPRIGHT_VIEWS[header.orientation](decoded)
