"""HTTP for the demo server: `Handler` answers one request and logs one line for it; `Server`
runs one thread per connection, at most `Connections.limit` of them."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import time
import traceback
from typing import Any

from colorjax.serving.app import App, RequestError
from colorjax.serving.limits import Connections

_CHUNK = 1 << 20


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
