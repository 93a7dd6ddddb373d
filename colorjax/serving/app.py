"""What the demo server does with an upload: the model, the page, and the answer of each endpoint
(`App.colorize`, `App.grayscale`), or a `RequestError` with its status."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np

from colorjax.data import images
from colorjax.serving.limits import Admission

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static",
                    "index.html")
MAX_HINTS = 1000
HINTS_HELP = ("Click the colorized photo to say which colour a point should have, then pick "
              "the colour; drag a hint to move it. The result follows within a second or two.")


class RequestError(Exception):
  """A request the server answers with `status` and a JSON error message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


def grayscale_png(decoded: images.DecodedImage) -> bytes:
  """The upload's L channel as an 8-bit gray PNG (alpha kept), what the model colorizes."""
  # (a) JAX loads with the first request, not at import: `python -m colorjax.serve --help` and
  # its flag errors import this module and answer without JAX (~450 ms more with it).
  # pylint: disable=g-import-not-at-top
  from colorjax import inference
  from colorjax.color import lab
  # pylint: enable=g-import-not-at-top
  lightness = np.asarray(inference.lightness(decoded.rgb.astype(np.float32) / 255.0))
  # The sRGB gray of the same L (a = b = 0): what the photo looks like without its colour.
  gray = np.asarray(lab.lab_to_rgb(np.concatenate(
      [lightness, np.zeros(lightness.shape[:-1] + (2,), np.float32)], axis=-1)))[..., 0]
  gray8 = np.round(gray * 255.0).astype(np.uint8)
  if decoded.alpha is not None:
    return images.encode_png(np.stack([gray8, decoded.alpha], axis=-1))
  return images.encode_png(gray8)


class App:
  """The model and the limits shared by all request threads."""

  def __init__(self, colorizer: Any, max_upload_bytes: int, max_pixels: int,
               admission: Admission | None = None):
    self.colorizer = colorizer
    self.max_upload_bytes = max_upload_bytes
    self.max_pixels = max_pixels
    self.admission = admission or Admission(2, 8, 60.0)
    # One model call at a time: concurrent calls would only compete for the same cores and
    # multiply peak memory on large photos.
    self.lock = threading.Lock()
    # Models trained with user hints (config.model.hints; Zhang et al. 2017) get the page's
    # hint tools.
    self.takes_hints = bool(getattr(colorizer, "takes_hints", False))
    with open(PAGE, encoding="utf-8") as f:
      self.page = (f.read()
                   .replace("{max_upload_mb}", f"{max_upload_bytes / 2 ** 20:g}")
                   .replace("{hints_enabled}", "true" if self.takes_hints else "false")
                   .replace("{hints_help}", HINTS_HELP))

  def decode(self, body: bytes) -> images.DecodedImage:
    try:
      return images.read_image(body, max_pixels=self.max_pixels, min_side=1)
    except images.ImageError as e:
      raise RequestError(413 if e.reason == "too large" else 400, e.detail) from e

  def parse_hints(self, header: str | None) -> list[tuple[int, int, tuple[int, int, int]]]:
    """The X-Hints header, `[{"x": 12, "y": 40, "rgb": [200, 30, 30]}, ...]` in the upload's
    pixels, as the Colorizer's hints; a malformed one is a 400 naming the problem."""
    if not header:
      return []
    if not self.takes_hints:
      raise RequestError(400, "this model was trained without hints: train one with "
                              "configs/hints.py to use them")
    try:
      entries = json.loads(header)
      if not isinstance(entries, list) or len(entries) > MAX_HINTS:
        raise ValueError(f"a JSON list of at most {MAX_HINTS} hints")
      return [(int(e["x"]), int(e["y"]), tuple(int(c) for c in e["rgb"])) for e in entries]
    except (ValueError, TypeError, KeyError) as e:
      raise RequestError(400, f'bad X-Hints header (expected [{{"x": X, "y": Y, "rgb": [R, G, '
                              f'B]}}, ...] in the photo\'s pixels): {e}') from None

  def colorize(self, body: bytes, hints_header: str | None = None) -> bytes:
    hints = self.parse_hints(hints_header)
    decoded = self.decode(body)
    try:
      with self.lock:
        result = (self.colorizer(images.to_model_input(decoded), hints=hints) if hints else
                  self.colorizer(images.to_model_input(decoded)))
    except ValueError as e:  # A hint outside the photo, a colour out of range.
      raise RequestError(400, f"bad hint: {e}") from None
    # Fast PNG compression: the page asks again at every change of its hints.
    return images.encode_png(result, compress_level=1 if hints else 6)

  def grayscale(self, body: bytes, hints_header: str | None = None) -> bytes:
    del hints_header  # The gray input does not depend on the hints.
    return grayscale_png(self.decode(body))
