"""Recognising writes refused for lack of space, and saying how much was needed.

Kept free of JAX and Orbax imports: `prepare` and `colorize` use it too.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

# ENOSPC: the filesystem is full; EDQUOT: the user's quota; EFBIG: the process's file size
# limit (`ulimit -f`, RLIMIT_FSIZE) or the filesystem's largest file.
REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
           errno.EFBIG: "the file size limit (ulimit -f) was reached"}
# TensorStore (Orbax's writer) reports OS errors inside ValueError messages, e.g.
# "Failed to write 6984 bytes to file 6: File too large [os_error_code='27']".
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


class DiskFullError(OSError):
  """A write refused for space; the message names what, where, and how much was needed."""


def errno_of(error: BaseException | None) -> int | None:
  """ENOSPC / EDQUOT / EFBIG if `error`, or an error that caused it, is a write refused for
  space; None otherwise."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in REASONS:
      return error.errno
    for match in _OS_ERROR_CODE.finditer(str(error)):
      if int(match.group(1)) in REASONS:
        return int(match.group(1))
    error = error.__cause__ or error.__context__
  return None


def reason(code: int) -> str:
  return f"{REASONS[code]} ({errno.errorcode[code]})"


def megabytes(num_bytes: float) -> str:
  return f"{num_bytes / 2**20:.1f} MB"


def free_space(path: str) -> str:
  """'<n> MB free' on the filesystem holding `path` (or its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return f"{megabytes(shutil.disk_usage(path).free)} free"
  except OSError:
    return "free space unknown"
