"""The demo server under load, on 127.0.0.1: bounded memory, every request answered, still up.

Runs benchmarks/serve_load.py's load (real photos of mixed sizes, a truncated JPEG, a text file,
an oversized upload and a decompression bomb; 32 concurrent clients, a fixed request count)
against `python -m colorjax.serve` in a subprocess with a small admission limit.
"""

import pytest

from tests.helpers import launch
from tests.helpers import serve_load_module

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

MAX_ACTIVE, MAX_WAITING = 2, 4


def test_server_under_load_answers_everything_in_bounded_memory(trained_tiny):
  serve_load = serve_load_module()
  result = serve_load.measure(trained_tiny("lsgan"), count=64, concurrency=32,
                              max_active=MAX_ACTIVE, max_waiting=MAX_WAITING, max_upload_mb=1.0,
                              max_pixels=4_000_000, env=launch.cpu_env(1))
  print(serve_load.format_table(result))
  # Every request got its expected answer: 200 with an image for photos, 400 for corrupt
  # files, 413 for the oversized upload and the bomb (after 503 + Retry-After when busy).
  assert not result["wrong"], result["wrong"][:5]
  assert set(result["statuses"]) == set(serve_load.EXPECTED)
  # The limit held: 32 clients, never more than max_active + max_waiting requests inside; the
  # rest were turned away with 503 at once instead of piling up.
  assert result["peak_in_server"] <= MAX_ACTIVE + MAX_WAITING
  assert result["busy_503"] > 0
  # Memory: the load (photos up to 1600x1200, a 30000x30000 bomb) adds little to the warmed-up
  # server; an unbounded server would hold 32 decoded photos and their float working sets.
  rss = result["rss_mb"]
  assert rss["peak"] - rss["before"] < 400, rss
  assert result["server_alive"]
