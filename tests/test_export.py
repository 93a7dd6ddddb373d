"""StableHLO, ONNX and SavedModel exports (colorjax/export.py) reproduce the live colorizer on real
photos, with and without hint maps."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import skimage.data

from colorjax import export
from colorjax import inference
from tests.helpers import REPO_ROOT, train_tiny

pytestmark = pytest.mark.slow  # Every test uses a trained model and its exports (~20 s set-up).


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(colorizer, export folder) after `python -m colorjax.export --format=all` (in process).

  Its own workdir (not conftest's shared trained_tiny): the export is written into it."""
  workdir = train_tiny(str(tmp_path_factory.mktemp("workdir")))
  out = os.path.join(workdir, "exported")
  assert export.main([f"--workdir={workdir}", "--format=all", f"--out={out}"]) == 0
  return inference.Colorizer.from_workdir(workdir), out


def photos(height: int, width: int) -> np.ndarray:
  return np.stack([skimage.data.astronaut()[:height, :width],
                   skimage.data.coffee()[:height, :width],
                   skimage.data.chelsea()[:height, :width]])


def test_signature_describes_a_symbolic_rgb_function(exported):
  _, out = exported
  signature = json.load(open(os.path.join(out, export.SIGNATURE_FILE)))
  assert signature["inputs"][0]["shape"] == ["b", "h", "w", 3]
  assert signature["render_size"] == 16 and signature["step"] == 2
  assert set(signature["platforms"]) == {"cpu", "cuda"}


@pytest.mark.parametrize("batch,height,width", [(3, 200, 300), (1, 123, 77)])
def test_stablehlo_matches_live_model(exported, batch, height, width):
  colorizer, out = exported
  images = photos(height, width)[:batch]
  got = np.asarray(export.load_stablehlo(out)(images))
  assert got.shape == images.shape and got.dtype == np.uint8
  for image, result in zip(images, got):
    assert np.abs(result.astype(int) - colorizer(image)).max() <= 1


# im2col's signature in StableHLO: the kh x kw shifted views of a float NHWC tensor
# concatenated on the channels (4 or more of them: 2x2, 3x3, 4x4 kernels), feeding one matmul.
# Skip connections and the L/ab recombination concatenate 2 or 3 operands.
_CHANNEL_CONCAT = re.compile(r"stablehlo\.concatenate ((?:%[\w#]+, )+)dim = 3 : \(tensor<[^>]*f32>")


def _conv_ops(exported_module) -> tuple[int, list[int]]:
  """(number of convolution ops, operand counts of the channel concatenations)."""
  text = exported_module.mlir_module()
  return (len(re.findall(r"stablehlo\.convolution\b", text)),
          [m.group(1).count("%") for m in _CHANNEL_CONCAT.finditer(text)])


def test_export_for_cpu_and_cuda_made_on_a_cpu_host_has_no_im2col(exported):
  """One artifact for both platforms gets XLA's convolutions, whatever host lowered it."""
  _, out = exported
  with open(os.path.join(out, export.STABLEHLO_FILE), "rb") as f:
    module = jax.export.deserialize(bytearray(f.read()))
  assert set(module.platforms) == {"cpu", "cuda"}
  convolutions, concats = _conv_ops(module)
  assert convolutions > 0
  assert max(concats) < 4, concats


def test_cpu_only_export_has_xla_convolutions_and_matches_live_model(exported):
  """For inference XLA's convolution beats im2col on the CPU too (`inference.inference_conv`)."""
  colorizer, _ = exported
  module = export.lower_stablehlo(colorizer, ["cpu"])
  convolutions, concats = _conv_ops(module)
  assert convolutions > 0 and max(concats) < 4, (convolutions, concats)
  images = photos(64, 80)
  got = np.asarray(jax.jit(module.call)(images))
  for image, result in zip(images, got):
    assert np.abs(result.astype(int) - colorizer(image)).max() <= 1


def test_stablehlo_loads_without_colorjax_model_code(exported):
  _, out = exported
  script = (
      "import sys, numpy as np\n"
      "from colorjax.export import load_stablehlo\n"
      f"y = load_stablehlo({out!r})(np.full((2, 40, 56, 3), 128, np.uint8))\n"
      "assert y.shape == (2, 40, 56, 3), y.shape\n"
      "loaded = [m for m in ('colorjax.models', 'colorjax.train', 'flax', 'colorjax.inference')"
      " if m in sys.modules]\n"
      "assert not loaded, loaded\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]


def test_savedmodel_matches_live_model(exported):
  tf = pytest.importorskip("tensorflow", reason="the SavedModel export needs TF (tf extra)")
  colorizer, out = exported
  images = photos(96, 144)
  serving = tf.saved_model.load(os.path.join(out, export.SAVEDMODEL_DIR))
  got = serving.signatures["serving_default"](rgb=tf.constant(images))["output_0"].numpy()
  assert got.shape == images.shape
  for image, result in zip(images, got):
    assert np.abs(result.astype(int) - colorizer(image)).max() <= 1


@pytest.mark.parametrize("batch,height,width", [(3, 200, 300), (1, 123, 77), (2, 384, 512)])
def test_onnx_matches_live_model(exported, batch, height, width):
  ort = pytest.importorskip("onnxruntime", reason="the ONNX export needs the onnx extra")
  colorizer, out = exported
  session = ort.InferenceSession(os.path.join(out, export.ONNX_FILE),
                                 providers=["CPUExecutionProvider"])
  photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()][:batch]
  images = np.stack([photo[:height, :width] for photo in photos])
  (got,) = session.run(None, {"rgb": images})
  assert got.shape == images.shape and got.dtype == np.uint8
  for image, result in zip(images, got):
    want = colorizer(image)
    assert np.abs(result.astype(int) - want).max() <= 1
    assert np.abs(want.astype(int) - image).mean() > 1  # The model changed the colours.


def test_onnx_records_its_model(exported):
  onnx = pytest.importorskip("onnx", reason="the ONNX export needs the onnx extra")
  _, out = exported
  model = onnx.load(os.path.join(out, export.ONNX_FILE))
  props = {p.key: p.value for p in model.metadata_props}
  assert props == {"render_size": "16", "step": "2", "generator": "unet"}
  dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
  assert dims == ["b", "h", "w", 3]


def test_onnxruntime_backend_of_colorize_writes_what_jax_writes(exported, tmp_path):
  pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the onnx extra")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from colorjax import colorize  # pylint: disable=g-import-not-at-top
  _, out = exported
  workdir = os.path.dirname(out)
  Image.fromarray(skimage.data.coffee()[:150, :210]).save(tmp_path / "coffee.jpg", quality=90)
  Image.fromarray(skimage.data.camera()[:99, :77]).save(tmp_path / "camera.png")
  results = {}
  for backend in ("jax", "onnxruntime"):
    assert colorize.main([f"--workdir={workdir}", f"--backend={backend}", "--no_progress",
                          f"-o={tmp_path / backend}", str(tmp_path / "coffee.jpg"),
                          str(tmp_path / "camera.png")]) == 0
    results[backend] = [np.asarray(Image.open(tmp_path / backend / f"{stem}_color.png"))
                        for stem in ("coffee", "camera")]
  for jax_result, ort_result in zip(results["jax"], results["onnxruntime"]):
    assert jax_result.shape == ort_result.shape
    assert np.abs(jax_result.astype(int) - ort_result).max() <= 1


def test_colorizer_from_python_prints_nothing_but_real_warnings(exported):
  """A library call prints nothing unasked (Orbax's read-only notices), and warnings logged
  afterwards still show: only those notices are dropped, only during the call."""
  _, out = exported
  script = (
      "import logging, numpy as np\n"
      "from colorjax import inference\n"
      f"colorizer = inference.Colorizer.from_workdir({os.path.dirname(out)!r})\n"
      "colorizer(np.full((20, 30, 3), 90, np.uint8))\n"
      "print('colorized')\n"
      "logging.getLogger('absl').warning('Given directory is read only: a later warning')\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout == "colorized\n"
  assert result.stderr == "WARNING:absl:Given directory is read only: a later warning\n", (
      result.stderr)


def readme_snippet(name: str) -> str:
  """docs/serving.md's python block after `<!-- snippet: NAME ... -->`: what a user copies."""
  with open(os.path.join(REPO_ROOT, "docs", "serving.md")) as f:
    match = re.search(rf"<!-- snippet: {name}\b.*?-->\n```python\n(.*?)```", f.read(), re.S)
  assert match, f"docs/serving.md lost its {name} snippet"
  return match.group(1)


@pytest.mark.parametrize("name", ["stablehlo", "onnx", "savedmodel"])
def test_readme_snippet_runs_the_export_like_the_live_model(exported, name, tmp_path):
  if name == "savedmodel":
    pytest.importorskip("tensorflow", reason="the SavedModel export needs TF (tf extra)")
  if name == "onnx":
    pytest.importorskip("onnxruntime", reason="the ONNX export needs the onnx extra")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  colorizer, out = exported
  (tmp_path / "runs" / "lsgan").mkdir(parents=True)
  os.symlink(out, tmp_path / "runs" / "lsgan" / "export")
  Image.fromarray(skimage.data.coffee()[:150, :210]).save(tmp_path / "photo.jpg", quality=90)
  # A process of its own, with only what the snippet imports: no colorjax.
  result = subprocess.run([sys.executable, "-c", readme_snippet(name)], cwd=tmp_path,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  photo = np.asarray(Image.open(tmp_path / "photo.jpg"))
  got = np.asarray(Image.open(tmp_path / "photo_color.png"))
  assert got.shape == photo.shape
  assert np.abs(got.astype(int) - colorizer(photo)).max() <= 1

# ------------------------------------------------------------------------------------------
# A hint model's exports take hint maps (the tiny hint recipe: conftest's hints_workdir).
# ------------------------------------------------------------------------------------------
def test_stablehlo_export_takes_hint_maps(hints_workdir, hints_colorizer, tmp_path):
  out = str(tmp_path / "export")
  assert export.main([f"--workdir={hints_workdir}", "--format=stablehlo", f"--out={out}",
                      "--platforms=cpu"]) == 0
  signature = json.load(open(f"{out}/signature.json"))
  assert signature["hints"] and [i["name"] for i in signature["inputs"]] == [
      "rgb", "hint_ab", "hint_mask"]
  photo = skimage.data.coffee()[:90, :120]
  user = [(60, 45, (255, 0, 0))]
  hint_ab, mask = hints_colorizer.hint_maps(photo.shape[:2], user)
  got = np.asarray(export.load_stablehlo(out)(photo[None], hint_ab[None], mask[None]))[0]
  assert np.abs(got.astype(int) - hints_colorizer(photo, hints=user)).max() <= 1
  empty = np.zeros_like(hint_ab)[None], np.zeros_like(mask)[None]
  got = np.asarray(export.load_stablehlo(out)(photo[None], *empty))[0]
  assert np.abs(got.astype(int) - hints_colorizer(photo)).max() <= 1


def test_onnx_export_takes_hint_maps(hints_colorizer, tmp_path):
  """The ONNX serving graph of a hint model has the StableHLO export's inputs and pixels."""
  onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
  path = export.export_onnx(hints_colorizer, str(tmp_path / "export"))
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  assert [i.name for i in session.get_inputs()] == ["rgb", "hint_ab", "hint_mask"]
  photo = skimage.data.coffee()[:90, :120]
  user = [(60, 45, (255, 0, 0)), (20, 70, (0, 0, 255))]
  hint_ab, mask = hints_colorizer.hint_maps(photo.shape[:2], user)
  (got,) = session.run(None, {"rgb": photo[None], "hint_ab": hint_ab[None].astype(np.float32),
                              "hint_mask": mask[None].astype(np.float32)})
  assert np.abs(got[0].astype(int) - hints_colorizer(photo, hints=user)).max() <= 1
