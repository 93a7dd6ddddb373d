"""The core install needs no TensorFlow: train, event files, eval, colorize, export, serve.

`.ci/run` runs this file in a fresh venv made with `pip install -e .` (no TF, no TFDS), where
`import tensorflow` fails; in the full environment the same paths are checked to import no TF
(a GPU host with TF installed then starts fast and TF never touches the GPUs). The work runs in
a fresh interpreter: other test modules of a full-suite session import TF, this one must not.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from colorjax.core import summaries
from colorjax.core import tf_utils
from tests.helpers import REPO_ROOT
from tests.helpers import launch

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

HAS_TF = tf_utils.tensorflow_available()

# Each stage records whether TF has been imported by then; the report is the last stdout line.
_CORE_SCRIPT = r'''
import importlib.util, io, json, os, sys, threading, urllib.request
import numpy as np
from PIL import Image
workdir, photo, repo, export_format = sys.argv[1:5]
seen = {}
def note(stage):
  seen[stage] = "tensorflow" in sys.modules

import colorjax.inference
note("import colorjax.inference")
from colorjax import colorize, export, main, serve, train
from colorjax.core import summaries
from colorjax import preflight
note("import train, main, colorize, export, serve")

from colorjax.core import config_files
config = config_files.load("lsgan:tiny")  # The embedded scikit-image photos.
setup = preflight.check(config, workdir)  # The run's setup, built once, as main.py does.
train.train_and_evaluate(config, workdir, setup)
note("train")
scalars = summaries.read_scalars(workdir)
images = summaries.read_images(workdir)
note("read event files")
results = train.evaluate_checkpoint(config, workdir)
note("eval")
out = os.path.join(workdir, "colorized")
assert colorize.main([photo, "-o", out, "--workdir", workdir, "--no_progress"]) == 0
note("colorize")
exported = os.path.join(workdir, "export")
assert export.main([f"--workdir={workdir}", f"--format={export_format}", f"--out={exported}"]) == 0
rgb = np.asarray(Image.open(photo).convert("RGB"))[None]
stablehlo = np.asarray(export.load_stablehlo(exported)(rgb))
note("export")
server = serve.make_server(colorjax.inference.Colorizer.from_workdir(workdir), "127.0.0.1", 0)
threading.Thread(target=server.serve_forever, daemon=True).start()
host, port = server.server_address[:2]
with open(photo, "rb") as f:
  request = urllib.request.Request(f"http://{host}:{port}/api/colorize", data=f.read(),
                                   method="POST")
with urllib.request.urlopen(request, timeout=120) as response:
  served = np.asarray(Image.open(io.BytesIO(response.read())))
server.shutdown()
server.server_close()
note("serve")
print(json.dumps({
    "tf_imported": seen, "tf_installed": importlib.util.find_spec("tensorflow") is not None,
    "scalar_tags": sorted(scalars), "image_tags": sorted(images),
    "image_shapes": {k: [list(i.shape) for v in images[k].values() for i in v] for k in images},
    "eval": results, "colorized": sorted(os.listdir(out)), "exported": sorted(os.listdir(exported)),
    "stablehlo_shape": list(stablehlo.shape), "served_shape": list(served.shape),
    "photo_shape": list(rgb.shape[1:])}))
'''


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
  # One simulated device: the tiny config, and less compile time than conftest's 8.
  return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                        env=launch.cpu_env(1), timeout=timeout)


@pytest.fixture(scope="module")
def core_run(tmp_path_factory) -> tuple[str, dict]:
  """(workdir, report) of training configs/lsgan.py:tiny and using the model, in a fresh
  interpreter."""
  root = tmp_path_factory.mktemp("core")
  workdir, photo = str(root / "run"), str(root / "coffee.jpg")
  Image.fromarray(data.coffee()[:120, :160]).save(photo, quality=92)
  # Without TF, --format=all is the StableHLO export alone; with TF, all would add the
  # SavedModel (TF's own path), so the core's export is asked for by name.
  export_format = "stablehlo" if HAS_TF else "all"
  result = _run(["-c", _CORE_SCRIPT, workdir, photo, REPO_ROOT, export_format])
  assert result.returncode == 0, result.stderr[-4000:]
  return workdir, json.loads(result.stdout.strip().splitlines()[-1])


def test_core_paths_import_no_tensorflow(core_run):
  _, report = core_run
  assert report["tf_installed"] == HAS_TF
  imported = [stage for stage, tf_in in report["tf_imported"].items() if tf_in]
  assert not imported, f"TensorFlow was imported by: {imported}"
  assert len(report["tf_imported"]) == 8


def test_event_files_hold_training_and_eval_scalars_and_the_sample_grid(core_run):
  workdir, report = core_run
  scalars = summaries.read_scalars(workdir)
  assert {"g_loss", "images_per_sec", "g_learning_rate"} <= set(scalars)
  assert any(tag.startswith("eval/") for tag in scalars)
  assert report["scalar_tags"] == sorted(scalars)  # Read in the run and here: the same.
  assert all(np.isfinite(v) for values in scalars.values() for v in values.values())
  (tag,) = report["image_tags"]
  (height, width, channels), *_ = report["image_shapes"][tag]
  assert channels == 3 and height > 16 and width > 16
  assert report["eval"] and all(np.isfinite(v) for v in report["eval"].values())


def test_tensorboard_itself_reads_the_event_files(core_run):
  """TensorBoard's own loader (without TF it uses its stub) sees the scalars and images."""
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  workdir, _ = core_run
  for path in summaries.event_files(workdir):
    accumulator = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    if "g_loss" in tags:
      losses = [float(tensor_util.make_ndarray(e.tensor_proto))
                for e in accumulator.Tensors("g_loss")]
      assert losses and all(np.isfinite(losses))
      assert any(tag.startswith("samples/") for tag in tags)
      return
  pytest.fail(f"no event file with g_loss in {summaries.event_files(workdir)}")


def test_tensorflow_reads_the_event_files(core_run):
  """Where TF is installed, its own reader agrees with colorjax.core.summaries'."""
  tf = pytest.importorskip("tensorflow", reason="compares with TF's reader (tf extra)")
  workdir, _ = core_run
  ours = summaries.read_scalars(workdir)
  theirs = {}
  for path in summaries.event_files(workdir):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
        if number is not None and not value.tensor.string_val and number.size == 1:
          theirs.setdefault(value.tag, {})[event.step] = float(number.reshape(()))
  assert theirs == ours


def test_model_outputs_from_colorize_export_and_serve(core_run):
  workdir, report = core_run
  height, width, _ = report["photo_shape"]
  (name,) = report["colorized"]
  colorized = np.asarray(Image.open(os.path.join(workdir, "colorized", name)))
  assert colorized.shape == (height, width, 3)
  assert report["stablehlo_shape"] == [1, height, width, 3]
  assert report["served_shape"] == [height, width, 3]
  assert "model.stablehlo" in report["exported"]
  assert "savedmodel" not in report["exported"]


def test_importing_inference_imports_no_tensorflow():
  code = "import colorjax.inference, sys; print('tensorflow' in sys.modules)"
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=launch.cpu_env(1), timeout=300)
  assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


def test_torn_last_record_is_skipped_and_the_rest_kept(tmp_path):
  """A writer killed mid-record (SIGKILL) leaves a torn tail: everything before it is read."""
  writer = summaries.SummaryWriter(str(tmp_path))
  writer.write_scalars(1, {"loss": 2.5, "lr": np.float32(0.1)})
  writer.write_images(1, {"grid": np.zeros((1, 8, 8, 3), np.float32)})
  writer.write_hparams({"batch_size": 8, "shape": (1, 2), "name": None})
  writer.write_scalars(2, {"loss": 1.5})
  writer.close()
  size = os.path.getsize(writer.path)
  with open(writer.path, "r+b") as f:
    f.truncate(size - 3)
  assert summaries.read_scalars(str(tmp_path)) == {"loss": {1: 2.5}, "lr": {1: pytest.approx(0.1)}}
  (grid,) = summaries.read_images(str(tmp_path))["grid"][1]
  assert grid.shape == (8, 8, 3) and grid.dtype == np.uint8
  # A corrupt length is detected by its checksum, not read as a huge record.
  with open(writer.path, "r+b") as f:
    f.seek(0)
    f.write(struct.pack("<Q", 1 << 40))
  assert summaries.read_scalars(str(tmp_path)) == {}


@pytest.mark.skipif(HAS_TF, reason="checks the one-line errors of an install without TensorFlow; runs in .ci/run's venv without TF, not where TF is installed")
def test_tf_features_say_which_extra_to_install(core_run, tmp_path):
  workdir, _ = core_run
  assert _run(["-c", "import tensorflow"]).returncode != 0
  # A TFDS dataset name: one line naming the extra, before anything is built.
  result = _run(["-m", "colorjax.main", "--config=configs/lsgan.py:tiny",
                 f"--workdir={tmp_path / 'cifar'}", "--config.data.name=cifar10"])
  assert result.returncode == 2, result.stderr[-2000:]
  (line,) = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert "colorjax[tfds]" in line and "colorjax[tf]" in line, line
  assert not (tmp_path / "cifar").exists()
  result = _run(["-m", "colorjax.export", f"--workdir={workdir}", "--format=savedmodel",
                 f"--out={tmp_path / 'export'}"])
  assert result.returncode == 2 and "colorjax[tf]" in result.stderr, result.stderr[-2000:]
  os.makedirs(tmp_path / "src")
  Image.fromarray(data.astronaut()).save(tmp_path / "src" / "a.png")
  result = _run(["-m", "colorjax.prepare", f"--src={tmp_path / 'src'}", "--name=x",
                 f"--data_dir={tmp_path / 'tfds'}"])
  assert result.returncode == 2 and "colorjax[tf]" in result.stderr, result.stderr[-2000:]
