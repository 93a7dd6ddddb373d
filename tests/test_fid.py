"""Tests for colorjax.fid: the Frechet distance, the accumulator, weight files and the network."""

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
