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

import sys
from typing import Any, Sequence

from absl import flags

from colorjax.core import cli
from colorjax.core import console
from colorjax.core import errors
from colorjax.serving.app import App
from colorjax.serving.handler import Handler, Server
from colorjax.serving.limits import Admission

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


def make_server(colorizer: Any, host: str, port: int, max_upload_mb: float = 20.0,
                max_pixels: int = DEFAULT_MAX_PIXELS, max_active: int = 2,
                max_waiting: int = 8, wait_timeout_s: float = 60.0, max_connections: int = 64,
                read_timeout_s: float = 10.0) -> Server:
  """A threaded HTTP server for `colorizer` (port 0 picks a free port: see server_address).

  Its parts are colorjax.serving's: what each endpoint answers (`app.App`), the load bounds
  (`limits.Admission`, `limits.Connections`) and HTTP (`handler.Handler`, `handler.Server`).
  """
  app = App(colorizer, int(max_upload_mb * 2 ** 20), max_pixels,
            Admission(max_active, max_waiting, wait_timeout_s))
  handler = type("BoundHandler", (Handler,), {"app": app, "timeout": read_timeout_s})
  return Server((host, port), handler, max_connections)


def _serve(args: cli.Args) -> int:
  console.quiet_libraries()  # Before TensorFlow or Orbax load.
  # (a) JAX, Orbax and the model load once the flags are good: `--help` and a flag error answer
  # without them (~0.7 s more: inference ~450 ms, checkpointing ~250 ms), and they come after
  # quiet_libraries above.
  # pylint: disable=g-import-not-at-top
  from colorjax import inference
  from colorjax.core import checkpointing
  # pylint: enable=g-import-not-at-top
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