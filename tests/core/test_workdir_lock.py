"""One trainer per workdir (colorjax/core/workdir_lock.py): a lock whose recorded holder is dead
but whose flock an orphaned process still holds. Two real trainers on one workdir:
tests/end_to_end/test_faults.py."""

import json
import os
import socket
import subprocess
import sys

import pytest

from colorjax.core import workdir_lock


_HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({"host": sys.argv[2], "pid": int(sys.argv[3]),
                         "start": "2026-01-01T00:00:00+00:00"}).encode())
print("locked", flush=True)
time.sleep(120)
"""


def _hold_lock(path: str, host: str, pid: int) -> subprocess.Popen:
  """A real process holding the flock with the given holder record (as a forked data worker
  of a dead trainer would)."""
  process = subprocess.Popen([sys.executable, "-c", _HOLDER, path, host, str(pid)],
                             stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == "locked"
  return process


def test_lock_held_by_an_orphan_of_a_dead_trainer_is_taken_over(tmp_path):
  workdir = str(tmp_path)
  path = os.path.join(workdir, workdir_lock.LOCK_FILE)
  finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
  dead_pid = int(finished.stdout)
  # The holder on this host is alive: refused.
  live = _hold_lock(path, socket.gethostname(), os.getpid())
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getpid()}, started"):
      workdir_lock.acquire(workdir)
  finally:
    live.kill()
    live.wait()
  # The recorded holder is dead, but an orphan still holds the flock: taken over.
  orphan = _hold_lock(path, socket.gethostname(), dead_pid)
  try:
    fd = workdir_lock.acquire(workdir)
    assert json.load(open(path))["pid"] == os.getpid()
    workdir_lock.release(fd)
  finally:
    orphan.kill()
    orphan.wait()
  # A holder on another host cannot be checked: refused, named.
  other = _hold_lock(path, "other-host.example", dead_pid)
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match="host other-host.example"):
      workdir_lock.acquire(workdir)
  finally:
    other.kill()
    other.wait()
