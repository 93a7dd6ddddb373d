"""A small web demo: upload a photo, see it in grayscale and colorized, download the result.

  python -m colorjax.serve --workdir=runs/lsgan --port=8000 [--host=127.0.0.1]

Standard library HTTP server, one page (colorjax/static/index.html) and a JSON-error API:

  * `POST /api/colorize` (body: the encoded image) -> `image/png`, the colorized image at the
    upload's full resolution (RGBA uploads keep their alpha);
  * `POST /api/grayscale` (same body) -> `image/png`, the L channel the model sees;
  * errors -> status 400 (not an image, corrupt, ...) or 413 (over --max_upload_mb or
    --max_pixels) with `{"error": "<message>"}`; the server keeps running.
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import sys
import threading
from typing import Any, Sequence

import numpy as np
from PIL import Image

from colorjax import colorize as colorize_cli
from colorjax import images

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html")
_CHUNK = 1 << 20


class RequestError(Exception):
  """A request the server answers with `status` and a JSON error message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


def encode_png(image: np.ndarray) -> bytes:
  if image.dtype == np.uint16:  # PIL writes colour PNGs in 8 bits only.
    image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def grayscale_png(decoded: images.DecodedImage) -> bytes:
  """The upload's L channel as an 8-bit gray PNG (alpha kept), what the model colorizes."""
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  from colorjax.color import lab  # pylint: disable=g-import-not-at-top
  lightness = np.asarray(inference.lightness(decoded.rgb.astype(np.float32) / 255.0))
  # The sRGB gray of the same L (a = b = 0): what the photo looks like without its colour.
  gray = np.asarray(lab.lab_to_rgb(np.concatenate(
      [lightness, np.zeros(lightness.shape[:-1] + (2,), np.float32)], axis=-1)))[..., 0]
  gray8 = np.round(gray * 255.0).astype(np.uint8)
  if decoded.alpha is not None:
    return encode_png(np.stack([gray8, decoded.alpha], axis=-1))
  return encode_png(gray8)


class App:
  """The model and the limits shared by all request threads."""

  def __init__(self, colorizer: Any, max_upload_bytes: int, max_pixels: int):
    self.colorizer = colorizer
    self.max_upload_bytes = max_upload_bytes
    self.max_pixels = max_pixels
    # One model call at a time: concurrent calls would only compete for the same cores and
    # multiply peak memory on large photos.
    self.lock = threading.Lock()
    with open(PAGE, encoding="utf-8") as f:
      self.page = f.read().replace("{max_upload_mb}", f"{max_upload_bytes / 2 ** 20:g}")

  def decode(self, body: bytes) -> images.DecodedImage:
    try:
      return images.read_image(body, max_pixels=self.max_pixels, min_side=1)
    except images.ImageError as e:
      raise RequestError(413 if e.reason == "too large" else 400, e.detail) from e

  def colorize(self, body: bytes) -> bytes:
    decoded = self.decode(body)
    with self.lock:
      result = self.colorizer(colorize_cli.to_model_input(decoded))
    return encode_png(result)

  def grayscale(self, body: bytes) -> bytes:
    return grayscale_png(self.decode(body))


class Handler(http.server.BaseHTTPRequestHandler):
  """GET / (the page), POST /api/colorize and /api/grayscale."""
  server_version = "colorjax"
  app: App  # Set on the subclass `make_server` builds.

  def _send(self, status: int, content_type: str, body: bytes) -> None:
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    self.end_headers()
    self.wfile.write(body)

  def _error(self, status: int, message: str) -> None:
    self._send(status, "application/json", json.dumps({"error": message}).encode())

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    if self.path in ("/", "/index.html"):
      self._send(200, "text/html; charset=utf-8", self.app.page.encode())
    else:
      self._error(404, f"no page {self.path}")

  def _read_body(self) -> bytes:
    length = int(self.headers.get("Content-Length") or 0)
    if length > self.app.max_upload_bytes:
      # Read and drop the body so that the browser sees our answer, not a reset connection.
      while length > 0:
        chunk = self.rfile.read(min(_CHUNK, length))
        if not chunk:
          break
        length -= len(chunk)
      raise RequestError(413, f"upload too large: over the {self.app.max_upload_bytes / 2 ** 20:g}"
                              " MB limit")
    if length <= 0:
      raise RequestError(400, "empty upload: send the image file as the request body")
    return self.rfile.read(length)

  def do_POST(self) -> None:  # pylint: disable=invalid-name
    routes = {"/api/colorize": self.app.colorize, "/api/grayscale": self.app.grayscale}
    if self.path not in routes:
      self._error(404, f"no endpoint {self.path}")
      return
    try:
      self._send(200, "image/png", routes[self.path](self._read_body()))
    except RequestError as e:
      self._error(e.status, e.message)
    except Exception as e:  # pylint: disable=broad-except
      # Any other failure is reported to the page; the server keeps serving.
      self.log_error("colorize failed: %r", e)
      self._error(500, f"internal error: {type(e).__name__}: {e}")


def make_server(colorizer: Any, host: str, port: int, max_upload_mb: float = 20.0,
                max_pixels: int = images.DEFAULT_MAX_PIXELS) -> http.server.ThreadingHTTPServer:
  """A threaded HTTP server for `colorizer` (port 0 picks a free port: see server_address)."""
  app = App(colorizer, int(max_upload_mb * 2 ** 20), max_pixels)
  handler = type("BoundHandler", (Handler,), {"app": app})
  return http.server.ThreadingHTTPServer((host, port), handler)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m colorjax.serve",
                                   description="Web demo of a trained colorjax model.")
  parser.add_argument("--workdir", required=True, help="training workdir (config + checkpoints)")
  parser.add_argument("--port", type=int, default=8000)
  parser.add_argument("--host", default="127.0.0.1")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--render_size", type=int, default=None)
  parser.add_argument("--max_upload_mb", type=float, default=20.0)
  parser.add_argument("--max_pixels", type=int, default=images.DEFAULT_MAX_PIXELS)
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  colorizer = inference.Colorizer.from_workdir(args.workdir, args.step, args.render_size)
  server = make_server(colorizer, args.host, args.port, args.max_upload_mb, args.max_pixels)
  host, port = server.server_address[:2]
  print(f"serving step {colorizer.step} of {args.workdir} on http://{host}:{port}/", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
