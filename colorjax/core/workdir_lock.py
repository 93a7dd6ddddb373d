"""One training job per workdir: `<workdir>/train.lock`, held by the trainer (process 0).

Two trainers writing the same checkpoint directory corrupt each other's saves (Orbax's
temporary directories collide, one commits the other's half-written step). The trainer takes an
exclusive `fcntl.flock` on `train.lock` and writes its holder there (host, pid, start time); a
second trainer fails at once naming that holder.

Stale locks: the kernel drops a flock when its process dies, so a SIGKILLed or crashed job
never blocks the next one (its leftover file is simply overwritten, with a warning naming it).
One case keeps a dead job's flock alive: a child process that inherited the descriptor by fork
(a data worker orphaned by the kill). If the recorded holder is on this host and its pid is
gone, the lock file is replaced by a fresh one and locked; the orphan keeps a lock on a file
no trainer opens any more.

Eval, colorize, serve and export only read checkpoints and take no lock. On filesystems
without working flock (some NFS set-ups) the lock degrades to the file's JSON record only.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Any, Iterator

from absl import logging

LOCK_FILE = "train.lock"


class WorkdirLockedError(RuntimeError):
  """Another live training job holds the workdir; the message names it."""


def _holder_record() -> dict[str, Any]:
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "start": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _read_holder(fd: int) -> dict[str, Any]:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    return json.loads(os.read(fd, 4096).decode() or "{}")
  except (OSError, ValueError):
    return {}  # Empty or half-written by a job killed while taking the lock.


def _describe(holder: dict[str, Any]) -> str:
  if not holder:
    return "an unknown process (the lock file holds no record)"
  return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
          f"started {holder.get('start', '?')}")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Another user's live process.
  return True


def _dead_on_this_host(holder: dict[str, Any]) -> bool:
  return (holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int)
          and not _pid_alive(holder["pid"]))


def _try_flock(fd: int, path: str) -> bool:
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return False
    if e.errno in (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP):
      logging.warning("the filesystem of %s has no file locks: a second trainer on this "
                      "workdir would not be stopped", path)
      return True
    raise
  return True


def _open(path: str) -> int:
  # O_CLOEXEC (Python's default): a program exec'd by the trainer does not inherit the lock.
  return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def acquire(workdir: str) -> int:
  """Locks `workdir` for this process's training job; returns the lock's file descriptor.

  Raises:
    WorkdirLockedError: another live job holds it (the message names host, pid, start time).
  """
  path = os.path.join(workdir, LOCK_FILE)
  fd = _open(path)
  if not _try_flock(fd, path):
    holder = _read_holder(fd)
    if not _dead_on_this_host(holder):
      os.close(fd)
      raise WorkdirLockedError(
          f"workdir {workdir} is in use by another training job ({_describe(holder)}; lock "
          f"file {path}): stop that job or use another --workdir")
    # The holder died, but a forked child of it still holds the flock: start a new lock file.
    logging.warning("taking over the lock of a dead training job (%s): its pid is gone, a "
                    "child process still held the lock", _describe(holder))
    os.close(fd)
    os.unlink(path)
    return acquire(workdir)
  previous = _read_holder(fd)
  if previous and previous.get("pid") != os.getpid():
    logging.warning("taking over a stale lock left by a training job that ended without "
                    "releasing it (%s)", _describe(previous))
  record = json.dumps(_holder_record()).encode()
  os.ftruncate(fd, 0)
  os.pwrite(fd, record, 0)
  os.fsync(fd)
  return fd


def release(fd: int) -> None:
  """Empties and unlocks the lock file (a clean exit leaves no holder record behind)."""
  try:
    os.ftruncate(fd, 0)
  except OSError:
    pass
  fcntl.flock(fd, fcntl.LOCK_UN)
  os.close(fd)


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds the workdir's training lock for the block (`enabled`: process 0 only)."""
  if not enabled:
    yield
    return
  fd = acquire(workdir)
  try:
    yield
  finally:
    release(fd)
