"""The server's bounds under any load: requests working and waiting (`Admission`) and open
connections (`Connections`), with the counters `/api/stats` reports."""

from __future__ import annotations

import socket
import threading


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
