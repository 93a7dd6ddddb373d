"""Tests for FID: the Frechet distance and accumulator (colorjax/evals/frechet.py), the Inception
weights and network (inception.py) and the evaluator (fid.py)."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest
from flax import traverse_util
from skimage import data, transform

from colorjax.evals import frechet
from colorjax.evals import inception


def _random_cov(rng: np.random.Generator, dim: int, samples: int) -> np.ndarray:
  x = rng.standard_normal((samples, dim)) @ rng.standard_normal((dim, dim))
  return np.cov(x, rowvar=False)


def _frechet_direct(mu1, s1, mu2, s2) -> float:
  """The textbook formula with a general (non-symmetric) eigendecomposition of S1 S2."""
  eig = np.linalg.eigvals(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.sum(np.sqrt(np.clip(eig.real, 0, None))))


@pytest.mark.parametrize("method", ["sqrtm", "cholesky"])
def test_frechet_distance_closed_forms(method):
  # 1-D: (mu1 - mu2)^2 + (sd1 - sd2)^2.
  got = frechet.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]),
                             np.array([[9.0]]), method=method)
  assert got == pytest.approx(9.0 + 1.0, abs=1e-9)
  # Diagonal covariances: sum of the per-axis 1-D distances.
  rng = np.random.default_rng(0)
  v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  got = frechet.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2), method=method)
  assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("method", ["sqrtm", "cholesky"])
@pytest.mark.parametrize("samples", [500, 12])  # Full rank, and singular (samples < dim).
def test_frechet_distance_matches_direct_formula_and_is_symmetric(method, samples):
  rng = np.random.default_rng(samples)
  dim = 32
  s1, s2 = _random_cov(rng, dim, samples), _random_cov(rng, dim, samples)
  mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
  want = _frechet_direct(mu1, s1, mu2, s2)
  got = frechet.frechet_distance(mu1, s1, mu2, s2, method=method)
  assert got == pytest.approx(want, rel=1e-6)
  assert frechet.frechet_distance(mu2, s2, mu1, s1, method=method) == pytest.approx(got, rel=1e-6)
  assert abs(frechet.frechet_distance(mu1, s1, mu1, s1, method=method)) < 1e-6 * np.trace(s1)


def test_frechet_distance_rejects_bad_input():
  with pytest.raises(ValueError, match="mismatched"):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match="unknown method"):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), method="svd")


def test_accumulator_matches_numpy_and_merges():
  rng = np.random.default_rng(1)
  feats = rng.normal(3.0, 2.0, (50, 16)).astype(np.float32)
  acc, other = frechet.FidAccumulator(16), frechet.FidAccumulator(16)
  for batch in np.split(feats[:30], 3):
    acc.update(batch)
  other.update(feats[30:])
  acc.merge(other)
  mu, sigma = acc.statistics()
  assert acc.count == 50
  np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), atol=1e-10)
  with pytest.raises(ValueError, match=r"\(B, 16\)"):
    acc.update(np.zeros((2, 8)))
  with pytest.raises(ValueError, match="at least 2"):
    frechet.FidAccumulator(16).statistics()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[str, dict]:
  params = inception.init_params(seed=0)
  path = str(tmp_path_factory.mktemp("fid") / "inception.npz")
  inception.save_params(path, params)
  return path, params


def _flat_numpy(params) -> dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def test_save_load_round_trip(weights_file):
  path, params = weights_file
  module, loaded = inception.load_inception(path)
  assert isinstance(module, inception.InceptionV3)
  want, got = _flat_numpy(params), _flat_numpy(loaded)
  assert set(got) == set(want) and len(got) == 470
  for name in want:
    np.testing.assert_array_equal(got[name], want[name])


def test_load_errors_name_the_array(weights_file, tmp_path):
  path, _ = weights_file
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  victim = "Mixed_6c/branch7x7_2/conv/kernel"
  bad = dict(arrays)
  bad[victim] = arrays[victim][:, :5]
  np.savez(tmp_path / "shape.npz", **bad)
  shapes = r"shape \(1, 5, 160, 160\), expected \(1, 7, 160, 160\)"
  with pytest.raises(ValueError, match=f"{victim}.*{shapes}"):
    inception.load_inception(str(tmp_path / "shape.npz"))
  del bad[victim]
  np.savez(tmp_path / "missing.npz", **bad)
  with pytest.raises(ValueError, match=f"missing 1 .*{victim}"):
    inception.load_inception(str(tmp_path / "missing.npz"))
  with pytest.raises(FileNotFoundError, match="convert"):
    inception.load_inception(str(tmp_path / "nope.npz"))


def test_convert_torch_state_dict(weights_file):
  _, params = weights_file
  # The pytorch-fid layout: OIHW conv weights, BatchNorm running stats, a classifier and counters.
  torch_names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                 "var": "running_var"}
  state = {"fc.weight": np.zeros((1008, 2048)), "fc.bias": np.zeros(1008)}
  for name, value in _flat_numpy(params).items():
    *prefix, leaf = name.split("/")
    state[".".join(prefix + [torch_names[leaf]])] = (
        value.transpose(3, 2, 0, 1) if leaf == "kernel" else value)
    if leaf == "var":
      state[".".join(prefix + ["num_batches_tracked"])] = np.array(0)
  got = _flat_numpy(inception.convert_torch_state_dict(state))
  for name, value in _flat_numpy(params).items():
    np.testing.assert_array_equal(got[name], value)
  with pytest.raises(ValueError, match="Mixed_5b.extra.weight"):
    inception.convert_torch_state_dict({**state, "Mixed_5b.extra.weight": np.zeros(3)})


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="only checks the message shown when torch is absent")
def test_convert_command_without_torch_explains(tmp_path, capsys):
  from colorjax import prepare  # pylint: disable=g-import-not-at-top
  (tmp_path / "x.pth").write_bytes(b"not read without torch")
  assert prepare.main([f"--src={tmp_path / 'x.pth'}", f"--fid_weights={tmp_path / 'y.npz'}"]) == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert line.startswith("error: ") and "needs torch" in line, line
  assert not (tmp_path / "y.npz").exists()


def test_fid_of_random_network(weights_file):
  """Features of a reloaded random network: FID(x, x) = 0 and FID(photos, their gray) > 0."""
  module, params = inception.load_inception(weights_file[0])
  photos = np.stack([transform.resize(getattr(data, n)(), (64, 64), anti_aliasing=True)
                     for n in ("astronaut", "chelsea", "coffee", "rocket")]).astype(np.float32)
  gray = np.repeat(photos.mean(-1, keepdims=True), 3, axis=-1)
  # Same batch shape in every call: one compilation.
  feats = np.concatenate([np.asarray(inception.activations(module, params, x)) for x in (photos, gray)])
  assert feats.shape == (8, frechet.FEATURE_DIM) and np.isfinite(feats).all()
  assert feats.std() > 1e-2  # Non-degenerate features, else the FID checks prove nothing.
  color, mono = frechet.FidAccumulator(), frechet.FidAccumulator()
  color.update(feats[:2])
  color.update(feats[2:4])  # Streaming in two batches.
  mono.update(feats[4:])
  mu_c, s_c = color.statistics()
  self_fid = frechet.frechet_distance(mu_c, s_c, mu_c, s_c, method="cholesky")
  cross = frechet.fid_from_accumulators(color, mono, method="cholesky")
  assert abs(self_fid) < 1e-6 * np.trace(s_c)
  assert cross > 1e-3 * np.trace(s_c)
  # Batch composition must not change an image's features (no cross-image state in the net).
  mixed = np.asarray(inception.activations(module, params, np.concatenate([photos[2:], gray[:2]])))
  np.testing.assert_allclose(mixed, feats[[2, 3, 4, 5]], rtol=1e-4, atol=1e-5)


def test_feature_map_sizes_match_inception_v3():
  """Any input is resized to 299 x 299, where the blocks have Inception-v3's published sizes."""
  module = inception.InceptionV3()
  params = jax.eval_shape(module.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32))
  _, state = jax.eval_shape(
      lambda p, x: module.apply(p, x, capture_intermediates=True, mutable=["intermediates"]),
      params, jax.ShapeDtypeStruct((1, 200, 350, 3), np.float32))
  inter = state["intermediates"]
  want = {"Conv2d_4a_3x3": (71, 71, 192), "Mixed_5d": (35, 35, 288), "Mixed_6a": (17, 17, 768),
          "Mixed_6e": (17, 17, 768), "Mixed_7a": (8, 8, 1280), "Mixed_7c": (8, 8, 2048)}
  for name, shape in want.items():
    assert inter[name]["__call__"][0].shape == (1, *shape), name
  assert inter["__call__"][0].shape == (1, frechet.FEATURE_DIM)


# ------------------------------------------------------------------------------------------
# The "fid" evaluator (colorjax/evals/fid.py): sharded features, statistics across processes.
# ------------------------------------------------------------------------------------------
NUM_EVAL_PHOTOS = 10  # Two eval batches of 8: the second has 6 padded rows, which must not count.


def _photo_folder(root) -> str:
  """train/ and test/ folders of 32 px crops of different photos."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  photos = [getattr(data, n)()[..., :3] for n in ("astronaut", "chelsea", "coffee", "rocket")]
  for split, count in (("train", 2), ("test", NUM_EVAL_PHOTOS)):
    (root / split).mkdir(parents=True)
    for i in range(count):
      photo = photos[i % len(photos)]
      top, left = (37 * i) % (photo.shape[0] - 160), (53 * i) % (photo.shape[1] - 160)
      crop = photo[top:top + 160, left:left + 160]
      Image.fromarray(crop).resize((32, 32), Image.LANCZOS).save(root / split / f"{i:02d}.png")
  return str(root)


@pytest.fixture(scope="module")
def fid_config(tmp_path_factory, weights_file):
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config("lsgan")
  with config.unlocked():
    config.data.name = _photo_folder(tmp_path_factory.mktemp("photos"))
    config.eval.num_images = -1
    config.eval.batch_size = 8
    config.evals.fid.weights = weights_file[0]
  return config


def _fid_on_one_host(config) -> dict[str, float]:
  """The reference: every eval image's features in one array on this host, then FID."""
  from colorjax.color import lab  # pylint: disable=g-import-not-at-top
  from colorjax.core import distributed  # pylint: disable=g-import-not-at-top
  from colorjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from colorjax.training import run_setup  # pylint: disable=g-import-not-at-top
  dataset, _ = pipeline.create_eval_dataset(config)
  images = np.concatenate([batch["image"] for batch in dataset])
  assert len(images) == NUM_EVAL_PHOTOS
  setup = run_setup.RunSetup.create(config, distributed.make_data_mesh())
  state = setup.init_state()
  model_rgb = jax.jit(train.predictor(setup.parts).rgb)(state.ema, images)
  module, params = inception.load_inception(config.evals.fid.weights)
  sets = {"truth": images.astype(np.float32) / 255.0, "model": np.asarray(model_rgb),
          "gray": np.asarray(lab.gray_rgb(images))}
  stats = {}
  for name, rgb in sets.items():
    stats[name] = frechet.FidAccumulator()
    stats[name].update(np.asarray(inception.activations(module, params, rgb)))
  return {"fid": frechet.fid_from_accumulators(stats["model"], stats["truth"], method="cholesky"),
          "gray_fid": frechet.fid_from_accumulators(stats["gray"], stats["truth"],
                                                    method="cholesky")}


def _evaluator_fid(config, workdir) -> tuple[dict[str, float], int]:
  from colorjax.core import distributed  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from colorjax.evals import common, fid  # pylint: disable=g-import-not-at-top
  from colorjax.training import run_setup, steps  # pylint: disable=g-import-not-at-top
  setup = run_setup.RunSetup.create(config, distributed.make_data_mesh())
  state = setup.init_state()
  (evaluator,) = [e for e in common.build(config, train.predictor(setup.parts), setup.mesh,
                                          workdir) if isinstance(e, fid.Fid)]
  return dict(evaluator.run(steps.eval_variables(state), 0)), evaluator.num_images


@pytest.fixture(scope="module")
def one_process_fid(fid_config, tmp_path_factory):
  """The evaluator's FID in this process: 8 devices, the eval batch sharded over them."""
  assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
  return _evaluator_fid(fid_config, str(tmp_path_factory.mktemp("run")))


def test_fid_evaluator_matches_fid_of_all_features_on_one_host(fid_config, one_process_fid):
  results, num_images = one_process_fid
  assert num_images == NUM_EVAL_PHOTOS  # The padded rows are not counted.
  want = _fid_on_one_host(fid_config)
  assert results.keys() == want.keys()
  for key, value in want.items():
    assert results[key] == pytest.approx(value, rel=1e-4), key
  assert results["fid"] != pytest.approx(results["gray_fid"], rel=1e-3)  # Not degenerate.


# One of the 2 processes: the "fid" evaluator on a freshly initialised model, with every
# cross-process gather recorded.
_TWO_PROCESS_DRIVER = r'''
import importlib.util
import json
import sys

import jax
from jax.experimental import multihost_utils
import numpy as np

from colorjax.core import distributed

config_path, address, process_id, out = sys.argv[1:]
distributed.initialize(address, 2, int(process_id))
spec = importlib.util.spec_from_file_location("fid_config", config_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config()

crossed = []
gather = multihost_utils.process_allgather


def recording_gather(tree, tiled=False):
  crossed.extend({"shape": list(np.shape(x)), "dtype": str(x.dtype)} for x in jax.tree.leaves(tree))
  return gather(tree, tiled=tiled)


multihost_utils.process_allgather = recording_gather

from colorjax import train
from colorjax.evals import common, fid
from colorjax.training import run_setup, steps

setup = run_setup.RunSetup.create(config, distributed.make_data_mesh())
state = setup.init_state()
(evaluator,) = [e for e in common.build(config, train.predictor(setup.parts), setup.mesh,
                                        out + ".workdir") if isinstance(e, fid.Fid)]
results = dict(evaluator.run(steps.eval_variables(state), 0))
with open(out, "w") as f:
  json.dump({"results": results, "num_images": evaluator.num_images, "crossed": crossed,
             "processes": jax.process_count(), "devices": jax.device_count()}, f)
'''


def test_fid_with_two_processes_equals_one_process_and_only_statistics_cross(
    fid_config, one_process_fid, tmp_path):
  """2 processes of 2 CPU devices: each holds its own rows' features; only (count, sum, sum of
  outer products) per feature set cross between them."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.helpers import REPO_ROOT  # pylint: disable=g-import-not-at-top
  from tests.helpers import launch  # pylint: disable=g-import-not-at-top
  config_path = launch.write_config_file(str(tmp_path / "fid_config.py"), fid_config)
  address = f"127.0.0.1:{launch.free_port()}"
  outputs = [str(tmp_path / f"process_{i}.json") for i in range(2)]
  logs = [open(tmp_path / f"process_{i}.log", "w") for i in range(2)]
  # -c from the repository root: colorjax is imported from this checkout.
  processes = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESS_DRIVER, config_path, address,
                                 str(i), outputs[i]], cwd=REPO_ROOT, env=launch.cpu_env(2),
                                stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
  try:
    codes = [p.wait(timeout=600) for p in processes]
  finally:
    for p, log in zip(processes, logs):
      if p.poll() is None:
        p.kill()
        p.wait()
      log.close()
  assert codes == [0, 0], "\n\n".join((tmp_path / f"process_{i}.log").read_text()[-3000:]
                                      for i in range(2))
  records = [json.load(open(path)) for path in outputs]
  assert all(r["processes"] == 2 and r["devices"] == 4 for r in records)
  results, num_images = one_process_fid
  for record in records:
    assert record["num_images"] == num_images == NUM_EVAL_PHOTOS
    for key, value in results.items():
      assert record["results"][key] == pytest.approx(value, rel=1e-4), key
  # Every process computed the same distance from the same summed statistics.
  assert records[0]["results"] == records[1]["results"]
  # What crossed: per feature set (truth, model, gray), its count, sum (2048,) and sum of outer
  # products (2048, 2048), as float64 bit patterns; never images or per-image features.
  dim = frechet.FEATURE_DIM
  statistics = sorted([[2], [2 * dim], [dim, 2 * dim]] * 3)
  for record in records:
    assert sorted(item["shape"] for item in record["crossed"]) == statistics, record["crossed"]
    assert {item["dtype"] for item in record["crossed"]} == {"uint32"}
