"""Local colour hints (colorjax.color.hints; Zhang et al. 2017): simulation and rasterising user
points, jitted on small arrays.

A trained hint model through the user's paths: tests/test_inference.py (the Python API),
tests/test_colorize.py (hints files), tests/test_export.py (StableHLO and ONNX take hint maps),
tests/evals/test_hints.py (scores by hint count; every objective trains with hints).
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


@pytest.mark.slow  # ~4 s.
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
