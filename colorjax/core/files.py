"""Writing files so that a reader never sees half of one: the one atomic write of colorjax.

Every file colorjax writes for someone else to read (config.json, eval JSON, sample PNGs,
colorized images and videos, priors, dataset chunks, exports, reports) goes through
`atomic_path`: the content is written to a temporary name in the same folder and renamed over
the final name when complete, so a kill, a full disk or an error mid-write leaves the previous
file (or none), never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it to `path` if the block completes, removes
  it if the block raises.

  `suffix` ends the temporary name, for writers that pick the format from it (PIL, numpy, PyAV:
  ".png", ".npz", ".mp4"). The process id in the name keeps parallel writers of one folder apart.
  """
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}{suffix}"
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(text)


def write_bytes(path: str, data: bytes) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def write_json(path: str, record: Any) -> None:
  write_text(path, json.dumps(record, indent=2))
