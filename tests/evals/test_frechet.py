"""The Frechet distance and its streaming accumulator (colorjax/evals/frechet.py)."""

from __future__ import annotations

import numpy as np
import pytest

from colorjax.evals import frechet


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
