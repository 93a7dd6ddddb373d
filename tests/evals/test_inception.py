"""The Inception-v3 of FID (colorjax/evals/inception.py): its weights file, the conversion of
torchvision's weights, the network's feature maps, and FID on a random network's features."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import traverse_util
from skimage import data, transform

from colorjax.evals import frechet
from colorjax.evals import inception


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


@pytest.mark.slow  # Inception-v3 on 8 photos (~6 s).
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
