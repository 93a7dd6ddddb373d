"""Reading images from disk or bytes: the one place colorjax decodes user images.

Everything that reads a photo (the folder data source, `colorjax.prepare`, the
colorize command) goes through `read_image`, so every caller sees the same
handling of odd files: EXIF rotation, CMYK, 16-bit, palettes, alpha, and a
single `ImageError` (with a short, countable `reason`) for anything that cannot
be used. PIL's habit of silently returning a partially decoded image for a
truncated file is switched off: a truncated file is an error, never a photo
with a gray bottom half.

Also here: `list_images` (which files in a folder count as images), the classes
of a folder with one subfolder per class, and the way results leave colorjax:
`to_model_input` (a decoded image as the colorizer takes it), `encode_png` and
`save_image` (shared by the colorize command, the demo server and the dataset
writer). Which split a file belongs to is `colorjax.data.splits`; the training pipeline's fast
path for colour JPEGs (the header without PIL, DCT-scaled decoding) is `colorjax.data.jpeg`.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import pathlib
import warnings
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from colorjax.core import files

# File extensions (lower case, without the dot) that `list_images` picks up.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")

# Largest image (width * height) `read_image` decodes by default. 120 MP covers
# 100 MP medium-format cameras and panoramas while refusing decompression bombs
# (a small file that declares e.g. 40000x30000 pixels and would need GBs).
DEFAULT_MAX_PIXELS = 120_000_000

# Images whose shorter side is below this are refused by default: 1x1 spacer
# GIFs and icons carry no colour structure worth learning.
DEFAULT_MIN_SIDE = 16

# An RGB image counts as grayscale when fewer than GRAY_MAX_FRACTION of its
# pixels have a channel spread (max(R,G,B) - min(R,G,B)) above GRAY_TOLERANCE.
# The tolerance absorbs JPEG chroma noise and the faint tint of scanned
# black-and-white prints (a few levels), while any real colour, even pale skin
# or sky, spreads the channels by tens of levels. Using a fraction instead of
# the maximum keeps a handful of noisy pixels from making a gray photo "color".
GRAY_TOLERANCE = 12
GRAY_MAX_FRACTION = 0.01

# The grayscale test looks at a strided subsample of about this many pixels per
# side (at most twice as many), so it costs the same few microseconds for a 24 MP
# photo as for a thumbnail, and reads 1/25 to 1/64 of a decoded ImageNet-sized
# photo. A stride of 512 px per side (the rule until 2026-12) made the check cost
# more than the JPEG decode. On the first 2000 CIFAR-10 test photos upscaled to
# 384 px (JPEG 90) the two disagree on 3 (2 colour photos called gray, 1 gray called
# colour; 95 gray by either); at CIFAR's own 32 px they agree on all
# (benchmarks/README.md, input pipeline).
GRAY_SAMPLE_SIDE = 64

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})

PathOrBytes = Union[str, os.PathLike, bytes]


class ImageError(ValueError):
  """A file that cannot be used as an image.

  Attributes:
    reason: a short, fixed category ("empty file", "unreadable", "not an image",
      "truncated or corrupt", "too large", "too small") that callers count.
    detail: a human readable explanation, e.g. "too large: 40000x30000 exceeds
      max_pixels=120000000".
  """

  def __init__(self, reason: str, detail: str | None = None):
    self.reason = reason
    self.detail = detail or reason
    super().__init__(self.detail)


@dataclasses.dataclass(frozen=True)
class DecodedImage:
  """A decoded image, upright (EXIF orientation applied).

  Attributes:
    rgb: uint8 (H, W, 3) colour channels. For images with alpha these are the
      stored (straight, not premultiplied) colours; see `composite_on_white`.
    rgb16: uint16 (H, W, 3) for 16-bit single-channel sources (I;16 PNG/TIFF),
      else None. Pillow decodes 16-bit *RGB* PNGs to 8 bits itself, so those
      arrive with rgb16=None.
    alpha: uint8 (H, W) alpha channel, or None when the image has none.
    mode: the PIL mode of the file as stored (e.g. "CMYK", "P", "I;16").
    is_grayscale: True for single-channel modes and for colour images whose
      channels are (nearly) equal (see GRAY_TOLERANCE).
  """
  rgb: np.ndarray
  rgb16: np.ndarray | None
  alpha: np.ndarray | None
  mode: str
  is_grayscale: bool

  @property
  def height(self) -> int:
    return int(self.rgb.shape[0])

  @property
  def width(self) -> int:
    return int(self.rgb.shape[1])


def _read_bytes(source: PathOrBytes) -> bytes:
  if isinstance(source, (bytes, bytearray, memoryview)):
    return bytes(source)
  try:
    return pathlib.Path(source).read_bytes()
  except OSError as e:
    raise ImageError("unreadable", f"unreadable: {e.strerror or e}") from e


def open_image(data: bytes, max_pixels: int) -> Image.Image:
  """Opens (header only) and checks the declared size before any decoding."""
  try:
    with warnings.catch_warnings():
      # We apply our own max_pixels below; PIL's warning would only be noise.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      img = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:
    raise ImageError("too large", f"too large: {e}") from e
  except UnidentifiedImageError as e:
    raise ImageError("not an image", "not an image: format not recognized") from e
  except MemoryError:
    raise
  except Exception as e:  # PIL plugins raise many types on malformed headers.
    raise ImageError("truncated or corrupt", f"truncated or corrupt: {e}") from e
  width, height = img.size
  if width * height > max_pixels:
    raise ImageError(
        "too large", f"too large: {width}x{height} exceeds max_pixels={max_pixels}")
  return img


def _draft(img: Image.Image, min_decode_side: int) -> None:
  """Asks libjpeg for the smallest DCT scale whose shorter side is still >= min_decode_side."""
  width, height = img.size
  scale = min_decode_side / min(width, height)
  if scale < 0.5:  # Below 2x there is no smaller scale to gain.
    img.draft(img.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _load(img: Image.Image) -> Image.Image:
  """Fully decodes, refusing partial decodes, then applies EXIF orientation."""
  # Partial decodes must fail loudly; set it here (not only at import) because
  # any other library in the process may have flipped this global.
  ImageFile.LOAD_TRUNCATED_IMAGES = False
  try:
    img.load()
  except MemoryError:
    raise
  except Exception as e:  # OSError, SyntaxError, zlib.error, struct.error ...
    raise ImageError("truncated or corrupt", f"truncated or corrupt: {e}") from e
  try:
    img = ImageOps.exif_transpose(img)
  except MemoryError:
    raise
  except Exception:  # Malformed EXIF: the pixels are fine, keep them unrotated.
    pass
  return img


def _sixteen_bit_to_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
  """16/32-bit integer gray -> (uint8 rgb, uint16 rgb16)."""
  values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
  rgb16 = np.repeat(values.astype(np.uint16)[..., None], 3, axis=-1)
  # Round to nearest so 65535 -> 255 and 0 -> 0 exactly.
  gray8 = ((values * 255 + 32767) // 65535).astype(np.uint8)
  return np.repeat(gray8[..., None], 3, axis=-1), rgb16


def _split_alpha(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
  """Returns (image without alpha, alpha or None), resolving palettes first."""
  if img.mode == "P":
    # A palette may mark one index (or a table of them) as transparent.
    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
  elif img.mode == "PA":
    img = img.convert("RGBA")
  elif img.mode in ("RGBa", "La"):
    img = img.convert(img.mode[:-1] + "A")  # Un-premultiply.
  elif img.mode in ("L", "RGB") and "transparency" in img.info:
    img = img.convert(img.mode + "A")
  if img.mode in ("RGBA", "LA"):
    alpha = np.asarray(img.getchannel("A"))
    return img.convert(img.mode[:-1]), alpha
  return img, None


def channels_nearly_equal(rgb: np.ndarray, sample_side: int = GRAY_SAMPLE_SIDE) -> bool:
  """Whether an RGB (or BGR) uint8 image is grayscale up to GRAY_TOLERANCE noise, judged on
  a strided sample of about `sample_side` pixels a side (a view: no pass over the image)."""
  step = max(1, max(rgb.shape[0], rgb.shape[1]) // sample_side)
  sample = rgb[step // 2::step, step // 2::step]
  # max - min of uint8 planes cannot wrap; numpy's reductions over a length-3 last axis
  # cost several times more than these elementwise ops.
  c0, c1, c2 = sample[..., 0], sample[..., 1], sample[..., 2]
  spread = np.maximum(np.maximum(c0, c1), c2) - np.minimum(np.minimum(c0, c1), c2)
  return np.count_nonzero(spread > GRAY_TOLERANCE) < GRAY_MAX_FRACTION * spread.size


def read_image(
    source: PathOrBytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    min_decode_side: int | None = None,
) -> DecodedImage:
  """Decodes an image file (path or encoded bytes) into arrays.

  Args:
    source: a path or the encoded bytes of a JPEG/PNG/WebP/BMP/TIFF/GIF file.
      Multi-frame files (GIF, TIFF) give their first frame.
    max_pixels: refuse images with more pixels than this before decoding.
    min_side: refuse images whose shorter side (after EXIF rotation) is below.
    min_decode_side: when given, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
      scaling, several times faster than a full decode) as long as its shorter side stays at
      least this long. The training pipeline passes what its crops need.

  Returns:
    The decoded, upright image.

  Raises:
    ImageError: with `reason` one of "empty file", "unreadable", "not an image",
      "truncated or corrupt", "too large", "too small".
  """
  data = _read_bytes(source)
  if not data:
    raise ImageError("empty file", "empty file: 0 bytes")
  img = open_image(data, max_pixels)
  mode = img.mode
  if min_decode_side and img.format == "JPEG":
    _draft(img, min_decode_side)
  img = _load(img)
  width, height = img.size
  if min(width, height) < min_side:
    raise ImageError("too small", f"too small: {width}x{height} (min_side={min_side})")

  img, alpha = _split_alpha(img)
  rgb16 = None
  if img.mode in _SIXTEEN_BIT_MODES:
    rgb, rgb16 = _sixteen_bit_to_arrays(img)
  else:
    # "1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "F": PIL's conversions
    # are exact for all but CMYK, which uses the naive (profile-free) formula.
    rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
  rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
  # A palette image with a gray palette is gray too: decide on the pixels.
  is_grayscale = mode in _GRAY_MODES or channels_nearly_equal(rgb)
  return DecodedImage(rgb=rgb, rgb16=rgb16, alpha=alpha, mode=mode, is_grayscale=is_grayscale)


def composite_on_white(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
  """Flattens straight alpha onto a white background (uint8 in and out).

  Transparent pixels often hold arbitrary colours (black, or leftovers from
  editing); white makes them neutral (a=b=0 in Lab), which is the least wrong
  colour target for a region that has no colour.
  """
  if alpha is None:
    return rgb
  a = alpha.astype(np.float32)[..., None] / 255.0
  out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def to_model_input(decoded: DecodedImage) -> np.ndarray:
  """The array the colorizer takes: uint16 for 16-bit sources, RGBA when there is alpha."""
  if decoded.rgb16 is not None:  # 16-bit gray: its L is finer than the 8-bit copy's.
    return decoded.rgb16[..., 0]
  if decoded.alpha is not None:
    return np.concatenate([decoded.rgb, decoded.alpha[..., None]], axis=-1)
  return decoded.rgb


def to_8bit(image: np.ndarray) -> np.ndarray:
  """uint16 images rounded to uint8 (PIL writes colour PNGs and JPEGs in 8 bits only);
  anything else unchanged."""
  if image.dtype == np.uint16:
    return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  return image


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
  """PNG bytes of a uint8/uint16 gray, RGB or RGBA array (16-bit written as 8-bit).

  `compress_level` 6 is PIL's default; 3 is about 3x faster for about 5% larger files.
  """
  buffer = io.BytesIO()
  Image.fromarray(to_8bit(image)).save(buffer, format="PNG", compress_level=compress_level)
  return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95, chroma: str = "444") -> bytes:
  """JPEG bytes of a uint8 RGB array; `chroma` "444" (no subsampling: the a/b colour the model
  learns keeps its full resolution) or "420" (chroma at half resolution each way, as cameras
  store it: smaller and faster to decode)."""
  buffer = io.BytesIO()
  subsampling = {"444": 0, "420": 2}[chroma]
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
  return buffer.getvalue()


def save_image(image: np.ndarray, path: str, fmt: str = "png", quality: int = 95) -> None:
  """Writes uint8/uint16 RGB(A) as "png" or "jpeg" atomically (tmp file + rename); 16-bit is
  written as 8-bit, and JPEG, which has no alpha, gets RGBA flattened on white."""
  image = to_8bit(image)
  if fmt == "jpeg" and image.shape[-1] == 4:
    image = composite_on_white(image[..., :3], image[..., 3])
  with files.atomic_path(path) as tmp:  # A full disk or a kill leaves no half image.
    if fmt == "jpeg":
      Image.fromarray(image).save(tmp, format="JPEG", quality=quality, subsampling=0)
    else:
      Image.fromarray(image).save(tmp, format="PNG")


def _is_image_name(name: str) -> bool:
  return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS and "." in name


def list_images(folder: str | os.PathLike) -> list[str]:
  """All image files under `folder`, recursively, in a deterministic order.

  Extensions are matched case-insensitively against IMAGE_EXTENSIONS. Hidden
  files and folders (name starting with ".") are skipped: they are things like
  macOS "._IMG_0001.jpg" resource forks or thumbnail caches, not photos.

  Args:
    folder: the root folder.

  Returns:
    Paths (str, `folder` joined with the relative path) sorted by their
    relative POSIX path, so the order is the same on every machine and file
    system.

  Raises:
    NotADirectoryError: if `folder` is not a directory.
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise NotADirectoryError(f"not a folder: {root}")
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for name in filenames:
      path = pathlib.Path(dirpath) / name
      if not name.startswith(".") and _is_image_name(name) and path.is_file():
        found.append(path)
  found.sort(key=lambda p: p.relative_to(root).as_posix())
  return [os.fspath(p) for p in found]


def relative_key(path: str | os.PathLike, root: str | os.PathLike) -> str:
  """The POSIX-style path of `path` relative to `root` (the key `splits.hash_split` takes)."""
  return pathlib.Path(path).relative_to(root).as_posix()


def folder_class(relative_path: str) -> str | None:
  """The class of a file in a folder dataset: its first-level subfolder (None at the root)."""
  parts = relative_path.replace("\\", "/").split("/")
  return parts[0] if len(parts) > 1 else None


def folder_classes(relative_paths: Sequence[str]) -> list[str] | None:
  """The sorted classes of a folder dataset with one subfolder per class (as torchvision's
  ImageFolder reads it), or None when some files lie directly in the root."""
  classes = {folder_class(p) for p in relative_paths}
  return None if None in classes or not classes else sorted(classes)
