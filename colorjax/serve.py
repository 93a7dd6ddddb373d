"""A small web demo: upload a photo, see it in grayscale and colorized, download the result.

  python -m colorjax.serve --workdir=runs/lsgan --port=8000 [--host=127.0.0.1]

Standard library HTTP server, one page (colorjax/static/index.html) and a JSON-error API:

  * `POST /api/colorize` (body: the encoded image) -> `image/png`, the colorized image at the
    upload's full resolution (RGBA uploads keep their alpha);
    With a model trained with hints (configs/hints.py; Zhang et al. 2017), an `X-Hints` header
    `[{"x": 12, "y": 40, "rgb": [200, 30, 30]}, ...]` (the upload's pixel coordinates, 8-bit
    sRGB) asks for those colours at those points; the page places them with clicks;
  * `POST /api/grayscale` (same body) -> `image/png`, the L channel the model sees;
  * `GET /api/stats` -> JSON counters (served, refused as busy, active, waiting);
  * errors -> status 400 (not an image, corrupt, ...), 408 (the body stopped arriving for
    --read_timeout_s), 413 (over --max_upload_mb or --max_pixels) or 503 with Retry-After
    (busy) with `{"error": "<message>"}`; the server keeps running.

The log (stderr) has one line per request: client, request line, then the status and why, or
"client gone" (it disconnected before its answer) or "timed out" (silent for --read_timeout_s
before its request was complete), or "closed early" (a connection over --max_connections).
Tracebacks are for bugs of the server only.

Memory is bounded under any load: at most --max_active requests decode, colorize and encode at
once (the model itself runs one call at a time), at most --max_waiting more hold their upload
while they wait for a slot, and any request beyond those gets 503 with Retry-After at once
(its body is read in 1 MB pieces and dropped, so the browser sees the answer, not a reset). So
the peak is about max_active x (a --max_pixels image's working set) + (max_active +
max_waiting) x --max_upload_mb. --max_pixels defaults lower than the colorize command's: a
server's memory is shared by every visitor. benchmarks/serve_load.py measures it. Threads are
bounded too: at most --max_connections connections are open (`Connections`), so clients that
connect and send slowly or nothing cannot grow threads without limit.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any, Sequence

from absl import flags
import numpy as np

from colorjax.core import cli
from colorjax.core import errors
from colorjax.data import images

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html")
_CHUNK = 1 << 20
MAX_HINTS = 1000
HINTS_HELP = ("Click the colorized photo to say which colour a point should have, then pick "
              "the colour; drag a hint to move it. The result follows within a second or two.")
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
flags.DEFINE_integer("max_connections", 64,
                     "open connections at most; beyond it the one that has waited longest for "
                     "its request headers is closed (else the new one gets 503)",
                     lower_bound=1, flag_values=_FLAGS)
flags.DEFINE_float("read_timeout_s", 10.0,
                   "a client silent this long while sending its request (headers or body) is "
                   "dropped; a body that stops arriving gets 408", flag_values=_FLAGS)


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


class Connections:
  """At most `limit` connections open (one thread each), and the counters of the ways clients
  fail (`/api/stats`).

  A new connection over the limit closes the open one that has waited longest for its request
  headers: a client that connects and then sends slowly, or nothing, holds its place only until
  someone needs it, so a crowd of them cannot lock real visitors out. When every open
  connection has sent its headers (each then is bounded by the Admission and read timeouts),
  the new one is refused with 503 instead.
  """

  def __init__(self, limit: int):
    if limit < 1:
      raise ValueError(f"need max_connections >= 1, got {limit}")
    self.limit = limit
    self._lock = threading.Lock()
    self._open: set[socket.socket] = set()
    self._awaiting_headers: dict[socket.socket, None] = {}  # Oldest first.
    self._closed_early: set[socket.socket] = set()
    self.counts = {"connections_open": 0, "peak_connections_open": 0,
                   "connections_closed_early": 0, "connections_refused": 0,
                   "header_timeouts": 0, "body_timeouts": 0, "clients_gone": 0}

  def count(self, key: str) -> None:
    with self._lock:
      self.counts[key] += 1

  def open(self, connection: socket.socket) -> tuple[bool, socket.socket | None]:
    """(admitted, pushed out): whether `connection` may be served and, when it took the place of
    the oldest connection still awaiting its headers, that one, for the caller to close."""
    with self._lock:
      pushed_out = None
      if len(self._open) >= self.limit:
        if not self._awaiting_headers:
          self.counts["connections_refused"] += 1
          return False, None
        pushed_out = next(iter(self._awaiting_headers))
        del self._awaiting_headers[pushed_out]
        self._open.discard(pushed_out)  # Its thread ends as soon as the caller closes it.
        self._closed_early.add(pushed_out)
        self.counts["connections_closed_early"] += 1
      self._open.add(connection)
      self._awaiting_headers[connection] = None
      self.counts["connections_open"] = len(self._open)
      self.counts["peak_connections_open"] = max(self.counts["peak_connections_open"],
                                                 len(self._open))
      return True, pushed_out

  def headers_received(self, connection: socket.socket) -> None:
    with self._lock:
      self._awaiting_headers.pop(connection, None)

  def closed_early(self, connection: socket.socket) -> bool:
    with self._lock:
      return connection in self._closed_early

  def close(self, connection: socket.socket) -> None:
    """When its thread ends."""
    with self._lock:
      self._open.discard(connection)
      self._awaiting_headers.pop(connection, None)
      self._closed_early.discard(connection)
      self.counts["connections_open"] = len(self._open)

  def stats(self) -> dict[str, int]:
    with self._lock:
      return dict(self.counts, max_connections=self.limit)


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


class Handler(http.server.BaseHTTPRequestHandler):
  """GET / (the page) and /api/stats, POST /api/colorize and /api/grayscale."""
  server_version = "colorjax"
  app: App  # Set on the subclass `make_server` builds.
  server: "Server"
  # Seconds a read may wait for the client (socketserver applies it to the socket): a client
  # that stops sending its request is dropped after this long instead of holding a thread and a
  # place in the queue forever. `make_server` sets it from --read_timeout_s.
  timeout = 10.0
  _LOGGED_REQUEST_CHARS = 200  # Of a request line in the log (random bytes can fill 64 kB).

  # --- The log: one line per request, written when it ends.
  def handle_one_request(self) -> None:
    self._outcome, self._why, self.requestline = None, "", ""
    try:
      super().handle_one_request()  # Itself catches read timeouts and logs them (log_error).
    except ConnectionError:  # Reset or closed by the client: nobody to answer.
      self._outcome = "client gone"
      self.close_connection = True
    finally:
      if self.server.connections.closed_early(self.connection):
        self._outcome, self._why = "closed early", (
            f"over {self.server.connections.limit} connections, this one had sent no complete "
            "request yet")
      if self._outcome == "client gone":
        self.server.connections.count("clients_gone")
      if self._outcome is not None:
        request = self.requestline[:self._LOGGED_REQUEST_CHARS] if self.requestline else "-"
        self.log_message('"%s" %s%s', request, self._outcome, f" {self._why}" if self._why else "")

  def parse_request(self) -> bool:
    complete = super().parse_request()  # Reads the headers.
    if self.server.connections.closed_early(self.connection):
      return False  # Its headers ended where the server closed it: nobody to answer.
    self.server.connections.headers_received(self.connection)
    return complete

  def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
    del size
    self._outcome = str(int(code))  # Logged when the request ends: the answer may not arrive.

  def log_error(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
    """http.server's own error reports become the reason on the request's line."""
    if format.startswith("code %d"):  # send_error: status and message; log_request follows.
      self._why = str(args[1])
    elif format.startswith("Request timed out"):
      if self._outcome is None:  # Its request line or headers never came.
        self._outcome, self._why = "timed out", f"no data for {self.timeout:g} s"
        self.server.connections.count("header_timeouts")
      else:  # It stopped reading its answer.
        self._outcome, self._why = "client gone", f"not reading for {self.timeout:g} s"
    else:
      self._why = format % args

  def address_string(self) -> str:
    host, port = self.client_address[:2]
    return f"{host}:{port}"

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
    self._why = message
    self._send(status, "application/json", json.dumps({"error": message}).encode(), headers)

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    if self.path in ("/", "/index.html"):
      self._send(200, "text/html; charset=utf-8", self.app.page.encode())
    elif self.path == "/api/stats":
      stats = dict(self.app.admission.stats(), **self.server.connections.stats())
      self._send(200, "application/json", json.dumps(stats).encode())
    else:
      self._error(404, f"no page {self.path}")

  def _content_length(self) -> int:
    try:
      return max(0, int(self.headers.get("Content-Length") or 0))
    except ValueError as e:
      raise RequestError(400, "bad Content-Length header") from e

  def _drop_body(self, length: int) -> None:
    """Reads and drops the body so that the browser sees our answer, not a reset connection."""
    try:
      while length > 0:
        chunk = self.rfile.read(min(_CHUNK, length))
        if not chunk:
          break
        length -= len(chunk)
    except TimeoutError:
      pass  # A client announcing more than it sends still gets its answer.

  def _read_body(self) -> bytes:
    length = self._content_length()
    if length > self.app.max_upload_bytes:
      self._drop_body(length)
      raise RequestError(413, f"upload too large: over the {self.app.max_upload_bytes / 2 ** 20:g}"
                              " MB limit")
    if length <= 0:
      raise RequestError(400, "empty upload: send the image file as the request body")
    try:
      return self.rfile.read(length)
    except TimeoutError as e:
      self.server.connections.count("body_timeouts")
      raise RequestError(408, f"the upload stopped arriving (nothing for {self.timeout:g} s)") \
          from e

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
          result = routes[self.path](body, self.headers.get("X-Hints"))
        finally:
          del body  # The upload is not needed while the answer is sent.
          admission.deactivate(time.perf_counter() - started)
      finally:
        admission.leave()
      self._send(200, "image/png", result)
    except RequestError as e:
      self._error(e.status, e.message)
    except (ConnectionError, TimeoutError):
      raise  # The client's doing, not the server's: one line (handle_one_request).
    except Exception as e:  # pylint: disable=broad-except
      # A bug: its traceback goes to the log, the page gets a message, the server keeps serving.
      traceback.print_exc()
      self._error(500, f"internal error: {type(e).__name__}: {e}")


class Server(http.server.ThreadingHTTPServer):
  """One thread per connection, at most `connections.limit` connections (`Connections`)."""
  # The default listen backlog (5) drops connections of a burst, which clients see as
  # one-second SYN retries; refusing beyond the limit is the Admission's job.
  request_queue_size = 128
  daemon_threads = True
  _REFUSED = (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
              b"Connection: close\r\n\r\n")

  def __init__(self, address: tuple[str, int], handler: type[Handler], max_connections: int):
    self.connections = Connections(max_connections)
    super().__init__(address, handler)

  def process_request(self, request: socket.socket, client_address: Any) -> None:
    admitted, pushed_out = self.connections.open(request)
    if pushed_out is not None:
      try:
        pushed_out.shutdown(socket.SHUT_RDWR)  # Its thread reads the end and logs the line.
      except OSError:
        pass  # Already gone.
    if admitted:
      super().process_request(request, client_address)
      return
    try:
      request.setblocking(False)  # A few bytes into an empty send buffer: never waits.
      request.send(self._REFUSED)
    except OSError:
      pass
    self.shutdown_request(request)
    # The request line's format (http.server's), for a request never read.
    sys.stderr.write(f"{client_address[0]}:{client_address[1]} - - "
                     f"[{time.strftime('%d/%b/%Y %H:%M:%S')}] \"-\" 503 refused: "
                     f"{self.connections.limit} connections open, each past its headers\n")

  def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
    try:
      super().process_request_thread(request, client_address)
    finally:
      self.connections.close(request)


def make_server(colorizer: Any, host: str, port: int, max_upload_mb: float = 20.0,
                max_pixels: int = DEFAULT_MAX_PIXELS, max_active: int = 2,
                max_waiting: int = 8, wait_timeout_s: float = 60.0, max_connections: int = 64,
                read_timeout_s: float = 10.0) -> Server:
  """A threaded HTTP server for `colorizer` (port 0 picks a free port: see server_address)."""
  app = App(colorizer, int(max_upload_mb * 2 ** 20), max_pixels,
            Admission(max_active, max_waiting, wait_timeout_s))
  handler = type("BoundHandler", (Handler,), {"app": app, "timeout": read_timeout_s})
  return Server((host, port), handler, max_connections)


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
                       args.max_active, args.max_waiting, args.wait_timeout_s,
                       args.max_connections, args.read_timeout_s)
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
