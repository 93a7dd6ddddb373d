"""A small web demo: upload a photo, see it in grayscale and colorized, download the result.

  python -m colorjax.serve --workdir=runs/lsgan --port=8000 [--host=127.0.0.1]

Standard library HTTP server, one page (colorjax/static/index.html) and a JSON-error API:

  * `POST /api/colorize` (body: the encoded image) -> `image/png`, the colorized image at the
    upload's full resolution (RGBA uploads keep their alpha);
  * `POST /api/grayscale` (same body) -> `image/png`, the L channel the model sees;
  * `GET /api/stats` -> JSON counters (served, refused as busy, active, waiting);
  * errors -> status 400 (not an image, corrupt, ...), 413 (over --max_upload_mb or
    --max_pixels) or 503 with Retry-After (busy) with `{"error": "<message>"}`; the server
    keeps running.

Memory is bounded under any load: at most --max_active requests decode, colorize and encode at
once (the model itself runs one call at a time), at most --max_waiting more hold their upload
while they wait for a slot, and any request beyond those gets 503 with Retry-After at once
(its body is read in 1 MB pieces and dropped, so the browser sees the answer, not a reset). So
the peak is about max_active x (a --max_pixels image's working set) + (max_active +
max_waiting) x --max_upload_mb. --max_pixels defaults lower than the colorize command's: a
server's memory is shared by every visitor. benchmarks/serve_load.py measures it.
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from typing import Any, Sequence

from absl import flags
import numpy as np

from colorjax.core import cli
from colorjax.core import errors
from colorjax.data import images

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html")
_CHUNK = 1 << 20
# 16 MP (a 4900x3300 photo): its full-resolution Lab working set is about 0.7 GB.
DEFAULT_MAX_PIXELS = 16_000_000


COMMAND = cli.Command("python -m colorjax.serve", __doc__, required=("workdir",))
_FLAGS = COMMAND.flags
flags.DEFINE_string("workdir", None, "training workdir (config.json + checkpoints/)",
                    flag_values=_FLAGS)
flags.DEFINE_integer("port", 8000, "TCP port to listen on (0: any free)", lower_bound=0,
                     upper_bound=65535, flag_values=_FLAGS)
flags.DEFINE_string("host", "127.0.0.1",
                    "address to listen on; 0.0.0.0 opens the demo to the network",
                    flag_values=_FLAGS)
flags.DEFINE_integer("step", None, "checkpoint step (None: the latest that loads)",
                     flag_values=_FLAGS)
flags.DEFINE_integer("render_size", None,
                     "side of the square the model sees (None: its training size); see "
                     "python -m colorjax.colorize --help", flag_values=_FLAGS)
flags.DEFINE_enum("backend", "auto", ["auto", "jax", "onnxruntime"],  # inference.BACKENDS
                  "what runs the model: onnxruntime (ONNX Runtime, CPU; the onnx extra), jax, "
                  "or auto: onnxruntime on a CPU where it is installed, jax otherwise",
                  flag_values=_FLAGS)
flags.DEFINE_float("max_upload_mb", 20.0, "refuse larger uploads (413)", flag_values=_FLAGS)
flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS,
                     "refuse larger images (413) before decoding them", flag_values=_FLAGS)
flags.DEFINE_integer("max_active", 2, "requests decoding / colorizing / encoding at once",
                     lower_bound=1, flag_values=_FLAGS)
flags.DEFINE_integer("max_waiting", 8,
                     "requests waiting for a slot; beyond them: 503 with Retry-After",
                     lower_bound=0, flag_values=_FLAGS)
flags.DEFINE_float("wait_timeout_s", 60.0, "longest wait for a slot before a 503",
                   flag_values=_FLAGS)


class RequestError(Exception):
  """A request the server answers with `status` and a JSON error message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


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
    return images.encode_png(np.stack([gray8, decoded.alpha], axis=-1))
  return images.encode_png(gray8)


class Admission:
  """At most `max_active` requests working and `max_waiting` more waiting; the rest refused.

  Waiting requests hold only their upload; decoding (where memory grows with the pixel count)
  starts once a request is active.
  """

  def __init__(self, max_active: int, max_waiting: int, wait_timeout_s: float):
    if max_active < 1 or max_waiting < 0:
      raise ValueError(f"need max_active >= 1 and max_waiting >= 0, got {max_active}, "
                       f"{max_waiting}")
    self.max_active, self.max_waiting = max_active, max_waiting
    self.wait_timeout_s = wait_timeout_s
    self._admitted = threading.BoundedSemaphore(max_active + max_waiting)
    self._active = threading.BoundedSemaphore(max_active)
    self._lock = threading.Lock()
    self.counts = {"admitted": 0, "refused_busy": 0, "timed_out": 0, "active": 0,
                   "in_server": 0, "peak_in_server": 0}
    self._service_s = 1.0  # Moving average of a request's working time.

  def _count(self, **deltas: int) -> None:
    with self._lock:
      for key, delta in deltas.items():
        self.counts[key] += delta
      self.counts["peak_in_server"] = max(self.counts["peak_in_server"],
                                          self.counts["in_server"])

  def enter(self) -> bool:
    """Admits the request (True) or refuses it at once (False): never blocks."""
    if not self._admitted.acquire(blocking=False):
      self._count(refused_busy=1)
      return False
    self._count(admitted=1, in_server=1)
    return True

  def leave(self) -> None:
    self._count(in_server=-1)
    self._admitted.release()

  def activate(self) -> bool:
    """Waits up to wait_timeout_s for a working slot; False if none came free."""
    if not self._active.acquire(timeout=self.wait_timeout_s):
      self._count(timed_out=1)
      return False
    self._count(active=1)
    return True

  def deactivate(self, seconds: float) -> None:
    with self._lock:
      self._service_s = 0.8 * self._service_s + 0.2 * seconds
    self._count(active=-1)
    self._active.release()

  def retry_after_s(self) -> int:
    """About when a slot frees up: everyone inside served, at the recent pace."""
    with self._lock:
      return max(1, min(60, round(self.counts["in_server"] * self._service_s / self.max_active)))

  def stats(self) -> dict[str, int]:
    with self._lock:
      return dict(self.counts, max_active=self.max_active, max_waiting=self.max_waiting)


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
      result = self.colorizer(images.to_model_input(decoded))
    return images.encode_png(result)

  def grayscale(self, body: bytes) -> bytes:
    return grayscale_png(self.decode(body))


class Handler(http.server.BaseHTTPRequestHandler):
  """GET / (the page) and /api/stats, POST /api/colorize and /api/grayscale."""
  server_version = "colorjax"
  app: App  # Set on the subclass `make_server` builds.
  # A client that stops sending mid-upload is dropped after this long instead of holding a
  # thread and a place in the queue forever.
  timeout = 60

  def _send(self, status: int, content_type: str, body: bytes,
            headers: dict[str, str] | None = None) -> None:
    self.send_response(status)
    for key, value in (headers or {}).items():
      self.send_header(key, value)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    self.end_headers()
    self.wfile.write(body)

  def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    self._send(status, "application/json", json.dumps({"error": message}).encode(), headers)

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    if self.path in ("/", "/index.html"):
      self._send(200, "text/html; charset=utf-8", self.app.page.encode())
    elif self.path == "/api/stats":
      self._send(200, "application/json", json.dumps(self.app.admission.stats()).encode())
    else:
      self._error(404, f"no page {self.path}")

  def _content_length(self) -> int:
    try:
      return max(0, int(self.headers.get("Content-Length") or 0))
    except ValueError as e:
      raise RequestError(400, "bad Content-Length header") from e

  def _drop_body(self, length: int) -> None:
    """Reads and drops the body so that the browser sees our answer, not a reset connection."""
    while length > 0:
      chunk = self.rfile.read(min(_CHUNK, length))
      if not chunk:
        break
      length -= len(chunk)

  def _read_body(self) -> bytes:
    length = self._content_length()
    if length > self.app.max_upload_bytes:
      self._drop_body(length)
      raise RequestError(413, f"upload too large: over the {self.app.max_upload_bytes / 2 ** 20:g}"
                              " MB limit")
    if length <= 0:
      raise RequestError(400, "empty upload: send the image file as the request body")
    return self.rfile.read(length)

  def _busy(self, why: str) -> None:
    self._drop_body(self._content_length())
    retry = self.app.admission.retry_after_s()
    self._error(503, f"server busy ({why}): try again in {retry} s", {"Retry-After": str(retry)})

  def do_POST(self) -> None:  # pylint: disable=invalid-name
    routes = {"/api/colorize": self.app.colorize, "/api/grayscale": self.app.grayscale}
    if self.path not in routes:
      self._error(404, f"no endpoint {self.path}")
      return
    admission = self.app.admission
    try:
      if not admission.enter():
        self._busy(f"{admission.max_active} working, {admission.max_waiting} waiting")
        return
      try:
        body = self._read_body()
        if not admission.activate():
          retry = admission.retry_after_s()
          self._error(503, f"server busy: no free slot within {admission.wait_timeout_s:g} s; "
                           f"try again in {retry} s", {"Retry-After": str(retry)})
          return
        started = time.perf_counter()
        try:
          result = routes[self.path](body)
        finally:
          del body  # The upload is not needed while the answer is sent.
          admission.deactivate(time.perf_counter() - started)
      finally:
        admission.leave()
      self._send(200, "image/png", result)
    except RequestError as e:
      self._error(e.status, e.message)
    except (ConnectionError, TimeoutError) as e:
      self.log_error("client went away: %r", e)  # Nobody to answer.
    except Exception as e:  # pylint: disable=broad-except
      # Any other failure is reported to the page; the server keeps serving.
      self.log_error("colorize failed: %r", e)
      self._error(500, f"internal error: {type(e).__name__}: {e}")


class Server(http.server.ThreadingHTTPServer):
  # The default listen backlog (5) drops connections of a burst, which clients see as
  # one-second SYN retries; refusing beyond the limit is the Admission's job.
  request_queue_size = 128
  daemon_threads = True


def make_server(colorizer: Any, host: str, port: int, max_upload_mb: float = 20.0,
                max_pixels: int = DEFAULT_MAX_PIXELS, max_active: int = 2,
                max_waiting: int = 8, wait_timeout_s: float = 60.0) -> Server:
  """A threaded HTTP server for `colorizer` (port 0 picks a free port: see server_address)."""
  app = App(colorizer, int(max_upload_mb * 2 ** 20), max_pixels,
            Admission(max_active, max_waiting, wait_timeout_s))
  handler = type("BoundHandler", (Handler,), {"app": app})
  return Server((host, port), handler)


def _serve(args: cli.Args) -> int:
  from colorjax.core import console  # pylint: disable=g-import-not-at-top
  console.quiet_libraries()  # Before TensorFlow or Orbax load.
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  from colorjax.core import checkpointing  # pylint: disable=g-import-not-at-top
  try:
    colorizer = inference.Colorizer.from_workdir(args.workdir, args.step, args.render_size,
                                                 backend=args.backend)
  except (FileNotFoundError, checkpointing.CheckpointError) as e:
    return errors.report(e)  # No usable or no fitting checkpoint: one line.
  server = make_server(colorizer, args.host, args.port, args.max_upload_mb, args.max_pixels,
                       args.max_active, args.max_waiting, args.wait_timeout_s)
  host, port = server.server_address[:2]
  print(f"serving step {colorizer.step} of {args.workdir} on http://{host}:{port}/", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.serve` with `argv` (default: sys.argv[1:]); returns the exit code."""
  return COMMAND.run(_serve, argv)


if __name__ == "__main__":
  sys.exit(main())
