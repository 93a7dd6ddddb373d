"""Local colour hints (Zhang et al. 2017): simulation, rasterising user points, the Python API.

The simulation tests run the jitted functions on small arrays; the API tests train the
`configs/hints.py:tiny` recipe once (seconds) and use its checkpoint.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from colorjax.color import hints
from colorjax.color import lab
from colorjax.core import config_files


def _truth(seed=0, batch=4, size=24):
  """Smooth random normalised ab (B, H, W, 2): patch means differ from point values."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(-0.6, 0.6, (batch, 4, 4, 2)).astype(np.float32)
  return jax.image.resize(jnp.asarray(coarse), (batch, size, size, 2), "linear")


def _boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
  """Bounding boxes (top, left, bottom, right) of a mask with one hint."""
  rows, cols = np.nonzero(mask[..., 0])
  return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def test_simulation_is_deterministic_per_key():
  truth, cfg = _truth(), hints.HintConfig()
  simulate = jax.jit(lambda key: hints.simulate(key, truth, cfg))
  a, b = simulate(jax.random.key(3)), simulate(jax.random.key(3))
  c = simulate(jax.random.key(4))
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1], c[1])


def test_mask_and_map_agree_and_each_hint_is_its_patch_mean():
  truth = _truth(batch=16)
  cfg = hints.HintConfig(min_patch=2, max_patch=9)
  hint_ab, mask = jax.jit(lambda k: hints.simulate_count(k, truth, 1, cfg))(jax.random.key(0))
  hint_ab, mask, truth = map(np.asarray, (hint_ab, mask, truth))
  assert set(np.unique(mask)) <= {0.0, 1.0}
  assert np.all(hint_ab[mask[..., 0] == 0] == 0)
  for i in range(truth.shape[0]):
    top, left, bottom, right = _boxes(mask[i])
    assert mask[i, top:bottom, left:right].all()  # One square patch...
    assert mask[i].sum() == (bottom - top) * (right - left) and bottom - top == right - left
    assert 2 <= bottom - top <= 9
    mean = truth[i, top:bottom, left:right].mean(axis=(0, 1))
    np.testing.assert_allclose(hint_ab[i, top:bottom, left:right], np.broadcast_to(
        mean, (bottom - top, right - left, 2)), atol=1e-5)  # ...filled with its truth's mean.


def test_fixed_counts_place_that_many_patches():
  truth = _truth(batch=8, size=64)
  cfg = hints.HintConfig(min_patch=1, max_patch=1)  # 1 px patches: overlaps are rare.
  for count in (0, 5, 20):
    _, mask = hints.simulate_count(jax.random.key(count), truth, count, cfg)
    per_image = np.asarray(mask).sum(axis=(1, 2, 3))
    assert np.all(per_image <= count) and per_image.mean() >= 0.9 * count


def test_geometric_counts_follow_the_paper():
  """P(n) = (1 - p)^n p: one image in 8 without hints, 7 on average (truncated at 32)."""
  counts = np.asarray(hints.geometric_counts(jax.random.key(0), 100_000, hints.HintConfig()))
  assert abs(np.mean(counts == 0) - 0.125) < 0.005
  assert abs(np.mean(np.minimum(counts, 31)) - 7 * (1 - 0.875 ** 31)) < 0.1
  assert counts.max() == 32


def test_rasterize_places_points_at_render_pixels():
  a, b = lab.AB_SCALE * 0.5, -lab.AB_SCALE * 0.25
  hint_ab, mask = hints.rasterize([(0, 0, a, b), (199, 99, -a, 0.0)], (100, 200), 20,
                                  patch_size=3)
  assert mask[..., 0].sum() == 2 * 9
  np.testing.assert_allclose(hint_ab[0, 0], (0.5, -0.25))
  np.testing.assert_allclose(hint_ab[19, 19], (-0.5, 0.0))
  assert mask[18:20, 17:20].all() and not mask[16, 19, 0]
  with pytest.raises(ValueError, match="outside"):
    hints.rasterize([(200, 0, a, b)], (100, 200), 20)


def test_only_the_hint_recipe_turns_hints_on():
  """Every existing config keeps its L-only generator (and so its checkpoints)."""
  for name in config_files.names():
    config = config_files.load(name)
    assert hints.enabled(config) == (name == "hints"), name
  assert hints.input_channels(config_files.load("hints:tiny")) == 4


# ------------------------------------------------------------------------------------------
# The Python API, the colorize command and the export, on the tiny recipe's checkpoint.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp("hints_tiny"))
  train.train_and_evaluate(tiny_config("hints"), path)
  return path


@pytest.fixture(scope="module")
def colorizer(workdir):
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  return inference.Colorizer.from_workdir(workdir)


def test_eval_json_scores_each_hint_count(workdir):
  import json  # pylint: disable=g-import-not-at-top
  record = json.load(open(f"{workdir}/eval/latest.json"))
  assert set(record["by_hint_count"]) == {"0", "10"}
  # Zero revealed hints is the automatic result the colorization evaluator scores.
  assert record["by_hint_count"]["0"]["psnr"] == pytest.approx(record["model"]["psnr"], abs=1e-4)
  assert not any(k.startswith("hints_") for k in record["model"])


def test_no_hints_is_the_automatic_result_and_hints_change_it(colorizer):
  import skimage.data  # pylint: disable=g-import-not-at-top
  photo = skimage.data.astronaut()[:150, :200]
  automatic = colorizer(photo)
  np.testing.assert_array_equal(colorizer(photo, hints=None), automatic)
  np.testing.assert_array_equal(colorizer(photo, hints=[]), automatic)
  hinted = colorizer(photo, hints=[(100, 75, (255, 0, 0)), (10, 140, (0, 0, 255))])
  assert hinted.shape == photo.shape and not np.array_equal(hinted, automatic)
  # A batch with and without hints gives each image what a single call gives it.
  both = colorizer.colorize_batch([photo, photo], [None, [(100, 75, (255, 0, 0)),
                                                         (10, 140, (0, 0, 255))]])
  np.testing.assert_array_equal(both[0], automatic)
  assert np.abs(both[1].astype(int) - hinted).max() <= 1


def test_bad_hints_are_refused(colorizer):
  photo = np.zeros((40, 60, 3), np.uint8)
  for hints_, message in [([(70, 5, (1, 2, 3))], "outside"), ([(5, 5, (256, 0, 0))], "0-255"),
                          ([(5, 5)], "not \\(x, y, \\(r, g, b\\)\\)")]:
    with pytest.raises(ValueError, match=message):
      colorizer(photo, hints=hints_)


def test_hint_colour_is_the_picked_colours_ab():
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  import skimage.color  # pylint: disable=g-import-not-at-top
  (x, y, a, b), = inference.hint_lab([(3, 4, (200, 30, 40))])
  expected = skimage.color.rgb2lab(np.array([[[200, 30, 40]]], np.uint8))[0, 0, 1:]
  assert (x, y) == (3.0, 4.0) and np.allclose((a, b), expected, atol=0.05)


def test_colorize_command_reads_hints_files(workdir, tmp_path, capsys):
  import json  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from colorjax import colorize  # pylint: disable=g-import-not-at-top
  photo = tmp_path / "cat.png"
  Image.fromarray(skimage.data.chelsea()[:120, :160]).save(photo)
  good = tmp_path / "hints.json"
  good.write_text(json.dumps({"cat.png": [[80, 60, [0, 200, 0]], [10, 10, "#c02030"]]}))
  out = tmp_path / "out"
  assert colorize.main([f"--workdir={workdir}", str(photo), f"-o={out}",
                        f"--hints={good}", "--no_progress"]) == 0
  hinted = np.asarray(Image.open(out / "cat_color.png"))
  assert colorize.main([f"--workdir={workdir}", str(photo), f"-o={out}", "--overwrite",
                        "--no_progress"]) == 0
  assert not np.array_equal(hinted, np.asarray(Image.open(out / "cat_color.png")))
  capsys.readouterr()
  for content, message in [("{not json", "not JSON"),
                           (json.dumps({"dog.png": []}), "names no input"),
                           (json.dumps({"cat.png": [[1, 2, [0, 0]]]}), "colour"),
                           (json.dumps([1, 2]), "must be an object")]:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert colorize.main([f"--workdir={workdir}", str(photo), f"-o={out}", "--overwrite",
                          f"--hints={bad}", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_stablehlo_export_takes_hint_maps(workdir, colorizer, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top
  from colorjax import export  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "export")
  assert export.main([f"--workdir={workdir}", "--format=stablehlo", f"--out={out}",
                      "--platforms=cpu"]) == 0
  signature = json.load(open(f"{out}/signature.json"))
  assert signature["hints"] and [i["name"] for i in signature["inputs"]] == [
      "rgb", "hint_ab", "hint_mask"]
  photo = skimage.data.coffee()[:90, :120]
  user = [(60, 45, (255, 0, 0))]
  hint_ab, mask = colorizer.hint_maps(photo.shape[:2], user)
  got = np.asarray(export.load_stablehlo(out)(photo[None], hint_ab[None], mask[None]))[0]
  assert np.abs(got.astype(int) - colorizer(photo, hints=user)).max() <= 1
  empty = np.zeros_like(hint_ab)[None], np.zeros_like(mask)[None]
  got = np.asarray(export.load_stablehlo(out)(photo[None], *empty))[0]
  assert np.abs(got.astype(int) - colorizer(photo)).max() <= 1


@pytest.mark.parametrize("name", ["regression_l1", "colorful", "wgan_gp", "fusion_attention"])
def test_every_objective_and_generator_trains_with_hints(name, tmp_path):
  """Regression, classification (Zhang et al. 2016's CNN), a GAN with n_critic > 1 and the
  fusion generator: each takes the hint channels and scores by hint count."""
  import json  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(name)
  with config.unlocked():
    config.model.hints = True
    config.color.prior_num_images = 6
    config.evals = ml_collections.ConfigDict({
        "metrics": {"type": "colorization", "every": 0},
        "hints": {"type": "hints", "every": 0, "counts": (0, 5), "seed": 0}})
  state = train.train_and_evaluate(config, str(tmp_path))
  from colorjax.training import builders  # pylint: disable=g-import-not-at-top
  generator, _ = builders.make_generator(config)
  variables = {"params": state.ema["params"], "batch_stats": state.ema["batch_stats"]}
  size = config.data.image_size
  out = generator.apply(variables, jnp.zeros((1, size, size, 4)), train=False)
  assert out["ab"].shape == (1, size, size, 2)  # Its input: L, hint a, hint b, mask...
  with pytest.raises(Exception):
    generator.apply(variables, jnp.zeros((1, size, size, 1)), train=False)  # ...not L alone.
  record = json.load(open(tmp_path / "eval" / "latest.json"))
  for count in ("0", "5"):
    assert np.isfinite(record["by_hint_count"][count]["psnr"]), count


def test_onnx_export_takes_hint_maps(colorizer, tmp_path):
  """The ONNX serving graph of a hint model has the StableHLO export's inputs and pixels."""
  onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
  import skimage.data  # pylint: disable=g-import-not-at-top
  from colorjax import export  # pylint: disable=g-import-not-at-top
  path = export.export_onnx(colorizer, str(tmp_path / "export"))
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  assert [i.name for i in session.get_inputs()] == ["rgb", "hint_ab", "hint_mask"]
  photo = skimage.data.coffee()[:90, :120]
  user = [(60, 45, (255, 0, 0)), (20, 70, (0, 0, 255))]
  hint_ab, mask = colorizer.hint_maps(photo.shape[:2], user)
  (got,) = session.run(None, {"rgb": photo[None], "hint_ab": hint_ab[None].astype(np.float32),
                              "hint_mask": mask[None].astype(np.float32)})
  assert np.abs(got[0].astype(int) - colorizer(photo, hints=user)).max() <= 1
