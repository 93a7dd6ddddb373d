"""What a trained model outputs, on real photos, with bounds a broken model fails.

One real training run (`python -m colorjax.main --config=configs/lsgan.py:quick`: the README's
default method on the six scikit-image photos at 32 px, 300 steps, about a minute on an idle
2-core CPU) and then:

* its colorizations of its own training photos beat the gray baseline clearly on PSNR and
  recover most of their colourfulness, through the public `Colorizer` every command uses;
* no checkerboard in flat regions, where the initial generator (what a fixed-decay average of a
  short run mostly was) has plenty;
* the same input gives the same pixels through eval, `Colorizer`, `colorize`, the demo page and
  the StableHLO and SavedModel exports.

The bounds were set from measurements (docs/quality.md, section 3): the averaged weights of this
run are 4.6-11.2 dB over gray with 70-87% of the true colourfulness; the old fixed-decay average of
a 600-step run gave sepia (42-52% of the colourfulness on three of the photos) over the initial
weights' checkerboard.
"""

import io
import os
import subprocess
import sys
import threading
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorjax import colorize
from colorjax import export
from colorjax import inference
from colorjax import serve
from colorjax import train
from colorjax.evals import quality
from colorjax.training import run_setup
from colorjax.training import steps
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# Measured on this run (docs/quality.md); a model that outputs sepia, gray or noise fails them.
MIN_PSNR_GAIN_DB = 3.0  # Over the gray baseline, per photo (measured 4.6-11.2).
MIN_COLORFULNESS_SHARE = 0.6  # Of the original's colourfulness, per photo (measured 0.70-0.87).
# RMS period-2 ab energy (Lab units) in flat regions, mean over the photos: measured 11-12 for
# the trained generator (averaged and raw), 45 for the initial one, 2.4 for the photos themselves.
MAX_CHECKERBOARD = 15.0
MIN_INITIAL_CHECKERBOARD = 25.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """The README's command with the `:quick` variant, as a user runs it: one process on the
  machine's one CPU device (not the suite's 8 simulated ones, which only slow a CPU down)."""
  path = str(tmp_path_factory.mktemp("quick"))
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run(
      [sys.executable, "-m", "colorjax.main", "--config=configs/lsgan.py:quick",
       f"--workdir={path}"], cwd=REPO_ROOT, env=dict(env, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  return path


@pytest.fixture(scope="module")
def colorizer(workdir):
  return inference.Colorizer.from_workdir(workdir)


def photo(name: str) -> np.ndarray:
  return getattr(skimage.data, name)()[..., :3]


@pytest.mark.parametrize("name", PHOTOS)
def test_colorizes_its_training_photos(colorizer, name):
  score = quality.score_photo(colorizer, photo(name))
  assert score.psnr >= score.gray_psnr + MIN_PSNR_GAIN_DB, score
  assert score.colorfulness >= MIN_COLORFULNESS_SHARE * score.true_colorfulness, score


def test_no_checkerboard_where_the_initial_generator_has_one(workdir, colorizer):
  raw = inference.Colorizer.from_workdir(workdir, weights="raw")
  config = inference.load_config(workdir)
  parts = run_setup.make_step_parts(config)
  init = steps.init_state(parts, jax.random.key(config.seed), (1, 32, 32, 3))
  initial = inference.Colorizer(config, parts.generator, parts.decode, init.ema, step=0)
  mean = lambda c: np.mean([quality.score_photo(c, photo(name)).checkerboard for name in PHOTOS])
  assert mean(colorizer) <= MAX_CHECKERBOARD
  assert mean(raw) <= MAX_CHECKERBOARD
  assert mean(initial) >= MIN_INITIAL_CHECKERBOARD  # The measure sees the artifact.


def _png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def _read_png(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_same_pixels_through_every_consumer(workdir, colorizer, tmp_path):
  size = colorizer.render_size
  images = np.stack([np.asarray(Image.fromarray(photo(n)).resize((size, size), Image.LANCZOS))
                     for n in PHOTOS])

  # Eval: the trainer's eval step on the restored state.
  config = inference.load_config(workdir)
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  setup = run_setup.RunSetup.create(config, mesh)
  from colorjax.core import checkpointing
  manager = checkpointing.make_manager(workdir, 1, read_only=True)
  abstract = checkpointing.abstract_with_shardings(setup.abstract_state, setup.state_shardings)
  state = checkpointing.restore(manager, manager.latest_step(), abstract, None)
  manager.close()
  eval_rgb = jax.jit(train.predictor(setup.parts).rgb)(state.ema, jnp.asarray(images))
  reference = np.round(np.asarray(eval_rgb) * 255).astype(np.uint8)

  outputs = {"Colorizer": np.stack(colorizer.colorize_batch(list(images)))}

  src, out = tmp_path / "in", tmp_path / "out"
  src.mkdir()
  for name, image in zip(PHOTOS, images):
    Image.fromarray(image).save(src / f"{name}.png")
  assert colorize.main([str(src), "-o", str(out), f"--workdir={workdir}", "--no_progress"]) == 0
  outputs["colorize"] = np.stack([np.asarray(Image.open(out / f"{n}_color.png"))
                                  for n in PHOTOS])

  server = serve.make_server(colorizer, "127.0.0.1", 0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = "http://%s:%d/api/colorize" % server.server_address[:2]
    pages = []
    for image in images:
      request = urllib.request.Request(url, data=_png_bytes(image), method="POST")
      with urllib.request.urlopen(request, timeout=120) as response:
        pages.append(_read_png(response.read()))
    outputs["demo page"] = np.stack(pages)
  finally:
    server.shutdown()
    server.server_close()

  exported = str(tmp_path / "export")
  assert export.main([f"--workdir={workdir}", "--format=all", f"--out={exported}"]) == 0
  outputs["StableHLO"] = np.asarray(export.load_stablehlo(exported)(images))
  tf = pytest.importorskip("tensorflow", reason="the SavedModel export needs TF (tf extra)")
  saved = tf.saved_model.load(os.path.join(exported, export.SAVEDMODEL_DIR))
  outputs["SavedModel"] = saved.signatures["serving_default"](
      rgb=tf.constant(images))["output_0"].numpy()

  for name, got in outputs.items():
    assert got.shape == reference.shape, name
    # One 8-bit level: float rounding differs between XLA and TF kernels, never more.
    assert np.abs(got.astype(int) - reference).max() <= 1, name
