"""Load test of the demo server (`python -m colorjax.serve`), on loopback only.

  python benchmarks/serve_load.py [--workdir=runs/lsgan] [--requests=192] [--concurrency=32]

Starts the server as a subprocess on 127.0.0.1 (a free port; never another interface), then
sends a fixed number of uploads from `--concurrency` client threads and stops: real photos
(scikit-image's) as JPEG at mixed sizes from 96x64 to 1600x1200, plus a truncated JPEG, a text
file, an upload over --max_upload_mb and a decompression bomb (a real, complete PNG of
30000x30000 pixels, 1 bit deep: 60 kB on the wire, 2.7 GB once decoded to RGB). A client that
gets 503 waits for Retry-After and tries again (at most --retries times), as a browser script
would. Reported: every request's final status (each must be 200 for photos, 400 for corrupt
files, 413 for the oversized upload and the bomb), how many 503s were sent on the way, p50/p95
latency (first attempt to final answer), the server's RSS before, at peak (VmHWM) and after,
and the most requests the server held at once. Without --workdir a tiny model is trained for 2
steps into a temporary workdir (the weights do not matter for load). The row is appended to
benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from typing import Any

import numpy as np
from PIL import Image
import skimage.data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import git_commit  # noqa: E402  (benchmarks/common.py)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"  # Loopback only: this script never sends to another host.
PHOTO_SIZES = ((96, 64), (320, 240), (640, 480), (1024, 768), (1600, 1200))
EXPECTED = {"photo": 200, "truncated": 400, "not_an_image": 400, "oversized": 413, "bomb": 413}


# ------------------------------------------------------------------------------------------
# What is uploaded.
# ------------------------------------------------------------------------------------------
def _jpeg(array: np.ndarray, size: tuple[int, int]) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(
      buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
  return (struct.pack(">I", len(payload)) + kind + payload +
          struct.pack(">I", zlib.crc32(kind + payload)))


def decompression_bomb(side: int = 30_000) -> bytes:
  """A complete, valid 1-bit gray PNG of side x side zeros: tiny compressed, huge decoded."""
  row = b"\0" * (1 + (side + 7) // 8)  # Filter byte + packed bits.
  compressor = zlib.compressobj(9)
  data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
  header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) +
          _png_chunk(b"IEND", b""))


def payloads(max_upload_mb: float) -> list[tuple[str, str, bytes]]:
  """[(kind, name, body)]: 15 photos (3 photos x 5 sizes) and one of each bad kind."""
  photos = {"astronaut": skimage.data.astronaut(), "coffee": skimage.data.coffee(),
            "chelsea": skimage.data.chelsea()}
  items = [("photo", f"{name}_{w}x{h}", _jpeg(array, (w, h)))
           for (w, h) in PHOTO_SIZES for name, array in photos.items()]
  items.append(("truncated", "truncated.jpg", _jpeg(photos["coffee"], (640, 480))[:3000]))
  items.append(("not_an_image", "notes.txt", b"a text file, not a photo\n" * 40))
  oversized = int(max_upload_mb * 2 ** 20 * 1.5)
  items.append(("oversized", "oversized.jpg", _jpeg(photos["astronaut"], (320, 240)).ljust(
      oversized, b"\0")))
  items.append(("bomb", "bomb.png", decompression_bomb()))
  return items


def schedule(items: list[tuple[str, str, bytes]], count: int) -> list[tuple[str, str, bytes]]:
  """`count` requests cycling through `items`: every kind is sent, in a fixed order."""
  return [items[i % len(items)] for i in range(count)]


# ------------------------------------------------------------------------------------------
# The server process.
# ------------------------------------------------------------------------------------------
def rss_mb(pid: int) -> dict[str, float]:
  """Resident memory of `pid` now (VmRSS) and at its peak so far (VmHWM), in MB."""
  values = {}
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      key, _, rest = line.partition(":")
      if key in ("VmRSS", "VmHWM"):
        values[key] = int(rest.split()[0]) / 1024
  return {"rss": values["VmRSS"], "peak": values["VmHWM"]}


class ServerProcess:
  """`python -m colorjax.serve` on 127.0.0.1 and a free port, until `stop`."""

  def __init__(self, workdir: str, env: dict[str, str] | None = None, **flags: Any):
    args = [sys.executable, "-m", "colorjax.serve", f"--workdir={workdir}", f"--host={HOST}",
            "--port=0"] + [f"--{key}={value}" for key, value in flags.items()]
    self.popen = subprocess.Popen(args, cwd=REPO_ROOT, env=env or os.environ.copy(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = self.popen.stdout.readline()  # "serving step N of W on http://127.0.0.1:PORT/"
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
      self.popen.kill()
      raise RuntimeError(f"server did not start: {line}{self.popen.stderr.read()[-3000:]}")
    self.url = f"http://{HOST}:{match.group(1)}"
    # Keep draining the request log so that a full pipe never blocks the server.
    self._stderr: list[str] = []
    threading.Thread(target=lambda: self._stderr.extend(self.popen.stderr), daemon=True).start()

  def alive(self) -> bool:
    return self.popen.poll() is None

  def stop(self) -> None:
    if self.alive():
      self.popen.terminate()
      try:
        self.popen.wait(30)
      except subprocess.TimeoutExpired:
        self.popen.kill()
        self.popen.wait()


# ------------------------------------------------------------------------------------------
# The clients.
# ------------------------------------------------------------------------------------------
def post(url: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
  request = urllib.request.Request(url, data=body, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      return response.status, dict(response.headers), response.read()
  except urllib.error.HTTPError as e:
    return e.code, dict(e.headers), e.read()


def one_request(url: str, kind: str, name: str, body: bytes, retries: int,
                timeout: float) -> dict[str, Any]:
  """Sends one upload, retrying after 503 + Retry-After; returns what finally came back."""
  start, busy = time.perf_counter(), 0
  while True:
    try:
      status, headers, answer = post(url + "/api/colorize", body, timeout)
    except OSError as e:  # Reset, refused, timed out: the server did not answer.
      return {"kind": kind, "name": name, "status": None, "error": repr(e), "busy": busy,
              "seconds": time.perf_counter() - start}
    if status == 503 and busy < retries:
      busy += 1
      time.sleep(float(headers.get("Retry-After", "1")))
      continue
    result = {"kind": kind, "name": name, "status": status, "busy": busy,
              "seconds": time.perf_counter() - start}
    if status == 200:
      image = Image.open(io.BytesIO(answer))
      result["size"] = image.size
    else:
      result["error"] = json.loads(answer).get("error", "")
    return result


def run_load(url: str, requests: list[tuple[str, str, bytes]], concurrency: int,
             retries: int = 20, timeout: float = 120) -> list[dict[str, Any]]:
  assert url.startswith(f"http://{HOST}:"), f"loopback only, got {url}"
  with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    futures = [pool.submit(one_request, url, kind, name, body, retries, timeout)
               for kind, name, body in requests]
    return [f.result() for f in futures]


def get_json(url: str) -> dict[str, Any]:
  with urllib.request.urlopen(url, timeout=30) as response:
    return json.loads(response.read())


# ------------------------------------------------------------------------------------------
# One measured run.
# ------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
  return float(np.percentile(values, q)) if values else float("nan")


def measure(workdir: str, count: int, concurrency: int, max_active: int, max_waiting: int,
            max_upload_mb: float, max_pixels: int, env: dict[str, str] | None = None
            ) -> dict[str, Any]:
  """Starts the server, warms it on one photo per size, runs the load, stops the server."""
  items = payloads(max_upload_mb)
  server = ServerProcess(workdir, env, max_active=max_active, max_waiting=max_waiting,
                         max_upload_mb=max_upload_mb, max_pixels=max_pixels)
  try:
    idle = rss_mb(server.popen.pid)
    # Warm-up: one photo per size compiles the per-shape kernels, so that the load measures
    # serving, not compilation (the first request of a new size pays ~0.5 s once).
    warm = [item for item in items if item[0] == "photo"][::3]
    warmup = run_load(server.url, warm, 1)
    before = rss_mb(server.popen.pid)
    start = time.perf_counter()
    results = run_load(server.url, schedule(items, count), concurrency)
    wall = time.perf_counter() - start
    after = rss_mb(server.popen.pid)
    stats = get_json(server.url + "/api/stats")
    still_serving = one_request(server.url, *items[0], retries=0, timeout=60)["status"] == 200
    alive = server.alive()
  finally:
    server.stop()
  photos = [r["seconds"] for r in results if r["kind"] == "photo" and r["status"] == 200]
  everything = [r["seconds"] for r in results]
  by_kind = {}
  for r in results:
    entry = by_kind.setdefault(r["kind"], {})
    entry[str(r["status"])] = entry.get(str(r["status"]), 0) + 1
  return {
      "requests": count, "concurrency": concurrency, "max_active": max_active,
      "max_waiting": max_waiting, "max_upload_mb": max_upload_mb, "max_pixels": max_pixels,
      "wall_s": wall, "requests_per_s": count / wall,
      "statuses": by_kind,
      "wrong": [r for r in results if r["status"] != EXPECTED[r["kind"]]],
      "busy_503": sum(r["busy"] for r in results),
      "p50_s": percentile(everything, 50), "p95_s": percentile(everything, 95),
      "photo_p50_s": percentile(photos, 50), "photo_p95_s": percentile(photos, 95),
      "warmup_s": sum(r["seconds"] for r in warmup),
      "rss_mb": {"idle": idle["rss"], "before": before["rss"], "peak": after["peak"],
                 "after": after["rss"]},
      "peak_in_server": stats["peak_in_server"], "server_alive": alive and still_serving,
  }


def train_tiny_model(workdir: str) -> None:
  """2 steps of the tiny 16 px lsgan the tests use: the weights do not matter for load."""
  sys.path.insert(0, REPO_ROOT)
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(tiny_config("lsgan"), workdir)


def format_table(result: dict[str, Any]) -> str:
  rows = [f"requests {result['requests']} from {result['concurrency']} clients; server "
          f"max_active {result['max_active']}, max_waiting {result['max_waiting']}: "
          f"{result['wall_s']:.1f} s, {result['requests_per_s']:.1f} requests/s",
          "", "| kind | expected | final statuses |", "|---|---:|---|"]
  for kind, statuses in result["statuses"].items():
    rows.append(f"| {kind} | {EXPECTED[kind]} | "
                + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())) + " |")
  rss = result["rss_mb"]
  rows += ["", f"503 + Retry-After answers on the way: {result['busy_503']}; most requests in "
           f"the server at once: {result['peak_in_server']}; requests with an unexpected "
           f"final answer: {len(result['wrong'])}; server alive and serving after: "
           f"{result['server_alive']}",
           f"latency (first attempt to final answer) p50 {result['p50_s']:.2f} s, p95 "
           f"{result['p95_s']:.2f} s; photos only p50 {result['photo_p50_s']:.2f} s, p95 "
           f"{result['photo_p95_s']:.2f} s",
           f"server RSS MB: idle {rss['idle']:.0f}, after warm-up {rss['before']:.0f}, peak "
           f"{rss['peak']:.0f}, after the load {rss['after']:.0f}"]
  return "\n".join(rows)


def environment() -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  return {"device_kind": device.device_kind, "platform": device.platform,
          "device_count": jax.device_count(), "jax_version": jax.__version__,
          "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "git_commit": git_commit()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default=None, help="trained workdir (default: a tiny model)")
  parser.add_argument("--requests", type=int, default=192)
  parser.add_argument("--concurrency", type=int, default=32)
  parser.add_argument("--max_active", type=int, default=2)
  parser.add_argument("--max_waiting", type=int, default=8)
  parser.add_argument("--max_upload_mb", type=float, default=2.0)
  parser.add_argument("--max_pixels", type=int, default=4_000_000)
  parser.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results.jsonl"),
                      help='JSON lines appended here ("" = none)')
  args = parser.parse_args()
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as tmp:
    workdir = args.workdir or os.path.join(tmp, "workdir")
    if args.workdir is None:
      train_tiny_model(workdir)
    result = measure(workdir, args.requests, args.concurrency, args.max_active,
                     args.max_waiting, args.max_upload_mb, args.max_pixels)
  print(format_table(result))
  if args.out:
    record = {**environment(), "benchmark": "serve_load",
              "command": "python " + " ".join(sys.argv),
              "workdir": args.workdir or "tiny lsgan (16 px, 2 steps)",
              **{k: v for k, v in result.items() if k != "wrong"},
              "wrong": len(result["wrong"]),
              "load_average": [load_before, os.getloadavg()[0]],
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with open(args.out, "a") as f:
      f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  main()
