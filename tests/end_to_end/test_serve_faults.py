"""Clients that vanish or lie to the demo server, on 127.0.0.1 only.

`python -m colorjax.serve` runs as a subprocess with a short read timeout and a small
connection limit. Raw sockets send what real clients and scanners send: lying Content-Lengths,
a 64 KB header, chunked bodies, path traversal, unknown methods, random bytes, a PNG bomb, a
client that resets before its answer, a body that never arrives and a crowd of connections that
send their headers a byte at a time. Each gets its answer, the log has one line for it and no
traceback, and a real photo is still colorized while the crowd holds on.
"""

import io
import json
import re
import socket
import struct
import threading
import time

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.helpers import launch
from tests.helpers import serve_load_module

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

HOST = "127.0.0.1"
MAX_CONNECTIONS = 8
READ_TIMEOUT_S = 2
SLOW_CLIENTS = 40


serve_load = serve_load_module()  # benchmarks/serve_load.py: the server subprocess, its stats.


@pytest.fixture(scope="module")
def server(trained_tiny):
  process = serve_load.ServerProcess(trained_tiny("lsgan"), env=launch.cpu_env(1),
                                     max_upload_mb=1.0, max_pixels=4_000_000,
                                     max_connections=MAX_CONNECTIONS,
                                     read_timeout_s=READ_TIMEOUT_S)
  yield process
  process.stop()


def _port(server) -> int:
  return int(server.url.rsplit(":", 1)[1])


def _photo_jpeg() -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(skimage.data.astronaut()[:200, :300]).save(buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def _post_head(length: int | str, extra: str = "") -> bytes:
  return (f"POST /api/colorize HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {length}\r\n"
          f"{extra}\r\n").encode()


def _read_answer(sock: socket.socket) -> bytes:
  chunks = []
  try:
    while chunk := sock.recv(65536):
      chunks.append(chunk)
  except ConnectionResetError:
    pass
  return b"".join(chunks)


def _status(answer: bytes) -> int | None:
  match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
  if not match:  # A request line without a version is answered as HTTP/0.9: no status line.
    match = re.search(rb"<p>Error code: (\d{3})</p>", answer)
  return int(match.group(1)) if match else None


def _exchange(server, data: bytes, timeout: float = 60) -> tuple[int, bytes, float]:
  """(client port, the whole answer, seconds to it) for `data` sent on a fresh connection."""
  with socket.create_connection((HOST, _port(server)), timeout=timeout) as sock:
    started = time.monotonic()
    sock.sendall(data)
    answer = _read_answer(sock)
    return sock.getsockname()[1], answer, time.monotonic() - started


def _log_lines(server, port: int, timeout: float = 10) -> list[str]:
  """The server's log lines about the client on `port` (they come when its request ends)."""
  prefix = f"{HOST}:{port} "
  deadline = time.monotonic() + timeout
  while True:
    log = list(server._stderr)  # pylint: disable=protected-access
    lines = [line for line in log if line.startswith(prefix)]
    if lines or time.monotonic() > deadline:
      return lines
    time.sleep(0.05)


def _stats(server) -> dict[str, int]:
  return serve_load.get_json(server.url + "/api/stats")


def _png_of_photo(answer: bytes) -> np.ndarray:
  body = answer.split(b"\r\n\r\n", 1)[1]
  return np.asarray(Image.open(io.BytesIO(body)))


# (name, request bytes, expected status, text expected on the log line)
_LIARS = [
    ("negative Content-Length", _post_head(-5), 400, "empty upload"),
    ("bad Content-Length", _post_head("twelve"), 400, "bad Content-Length"),
    ("huge Content-Length, no body", _post_head(10 ** 15), 413, "upload too large"),
    ("64 KB header", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n", 431,
     "Line too long"),
    ("chunked body", b"POST /api/colorize HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400, "empty upload"),
    ("path traversal", b"GET /../../../../etc/passwd HTTP/1.1\r\n\r\n", 404, "no page"),
    ("encoded path traversal", b"GET /%2e%2e/%2e%2e/colorjax/serve.py HTTP/1.1\r\n\r\n", 404,
     "no page"),
    ("static traversal", b"GET /static/../../pyproject.toml HTTP/1.1\r\n\r\n", 404, "no page"),
    ("unknown method", b"BREW /pot HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
    ("random bytes", np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes() +
     b"\r\n\r\n", 400, "Bad request"),
    ("PNG bomb", _post_head(len(serve_load.decompression_bomb())) +
     serve_load.decompression_bomb(), 413, "too large"),
]


@pytest.mark.parametrize("name,request_bytes,status,logged", _LIARS, ids=[c[0] for c in _LIARS])
def test_lying_requests_get_their_answer_and_one_log_line(server, name, request_bytes, status,
                                                          logged):
  port, answer, _ = _exchange(server, request_bytes)
  assert _status(answer) == status, (name, answer[:300])
  assert b"root:" not in answer and b"import" not in answer  # No file outside the page.
  lines = _log_lines(server, port)
  assert len(lines) == 1 and f" {status} " in lines[0] and logged in lines[0], (name, lines)
  assert server.alive()


def test_a_body_that_never_arrives_gets_408_after_the_read_timeout(server):
  before = _stats(server)["body_timeouts"]
  port, answer, seconds = _exchange(server, _post_head(5000) + b"only a little")
  assert _status(answer) == 408, answer[:300]
  assert READ_TIMEOUT_S - 0.5 < seconds < READ_TIMEOUT_S + 20
  assert "stopped arriving" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
  assert _stats(server)["body_timeouts"] == before + 1
  (line,) = _log_lines(server, port)
  assert '"POST /api/colorize HTTP/1.1" 408 the upload stopped arriving' in line


def test_clients_gone_before_their_answer_are_one_line_each(server):
  photo = _photo_jpeg()
  before = _stats(server)["clients_gone"]
  ports = []
  for wait_s in (0.0, 0.3):  # Reset with the upload, and while the server colorizes.
    sock = socket.create_connection((HOST, _port(server)))
    sock.sendall(_post_head(len(photo)) + photo)
    time.sleep(wait_s)
    # SO_LINGER 0: close sends a reset, as a crashed client or a dropped network does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ports.append(sock.getsockname()[1])
    sock.close()
  for port in ports:
    (line,) = _log_lines(server, port, timeout=60)
    assert '"POST /api/colorize HTTP/1.1" client gone' in line, line
  assert _stats(server)["clients_gone"] == before + 2


def _trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
  """Sends each open socket one more header byte every 0.3 s (under the read timeout)."""
  while not stop.wait(0.3):
    for sock in sockets:
      try:
        sock.send(b"x")
      except OSError:
        pass  # Closed by the server: it made room for someone else.


def test_a_photo_is_colorized_while_a_crowd_sends_headers_slowly(server):
  before = _stats(server)
  crowd = []
  stop = threading.Event()
  trickler = threading.Thread(target=_trickle, args=(crowd, stop), daemon=True)
  try:
    for _ in range(SLOW_CLIENTS):
      sock = socket.create_connection((HOST, _port(server)))
      sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
      crowd.append(sock)
    trickler.start()
    time.sleep(1.0)  # The crowd holds every place it can.
    photo = _photo_jpeg()
    _, answer, seconds = _exchange(server, _post_head(len(photo)) + photo, timeout=120)
    stats = _stats(server)
  finally:
    stop.set()
    trickler.join()
    for sock in crowd:
      sock.close()
  assert _status(answer) == 200, answer[:300]
  colorized = _png_of_photo(answer)
  assert colorized.shape == (200, 300, 3)
  assert seconds < 60, seconds  # Generous for a busy 2-core machine; ~1 s when idle.
  # The crowd never held more than the limit; the oldest waiting ones made room.
  assert stats["peak_connections_open"] <= MAX_CONNECTIONS
  closed_early = stats["connections_closed_early"] - before["connections_closed_early"]
  assert closed_early >= SLOW_CLIENTS - MAX_CONNECTIONS, stats
  log = list(server._stderr)  # pylint: disable=protected-access
  crowd_lines = [line for line in log if "closed early" in line]
  assert len(crowd_lines) >= closed_early - 1, crowd_lines
  assert re.search(r'"(GET / HTTP/1.1|-)" closed early over 8 connections', crowd_lines[0])


def test_the_log_holds_no_traceback(server):
  """Runs last in this file: every request above was one line, none a traceback."""
  log = "".join(server._stderr)  # pylint: disable=protected-access
  print(log)  # The operator's view, shown with pytest -s.
  assert "Traceback" not in log and "Exception occurred" not in log, log[-3000:]
  assert server.alive()
