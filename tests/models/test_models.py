"""Generators and discriminators chosen by name (colorjax/models/__init__.py): the plain and
fusion_attention generators registered, built and run.

Each model's own tests: test_fusion.py, test_discriminators.py, test_zhang.py; shared layers:
test_layers.py.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import DISCRIMINATORS, GENERATORS, build_generator
from tests.helpers.models import init_and_train_apply, random_lightness

GENERATOR_KWARGS = {
    "plain": {"width": 8},
    "fusion_attention": {"width": 8, "num_classes": 5, "dropout": 0.2, "num_attention_blocks": 2},
}


def test_new_models_are_registered():
  assert {"plain", "fusion_attention"} <= set(GENERATORS.names())
  assert {"global", "ebgan_ae"} <= set(DISCRIMINATORS.names())


@pytest.mark.slow  # 3-10 s per case.
@pytest.mark.parametrize("name", sorted(GENERATOR_KWARGS))
@pytest.mark.parametrize("size", [32, 64])
def test_generator_returns_bounded_ab_of_input_size(name, size):
  model = build_generator(name, GENERATOR_KWARGS[name], jnp.float32)
  out, updates = init_and_train_apply(model, random_lightness(size))
  ab = np.asarray(out["ab"])
  assert ab.shape == (2, size, size, 2)
  assert np.all(np.isfinite(ab)) and np.abs(ab).max() <= 1.0 and ab.std() > 0
  assert "batch_stats" in updates
  if name == "fusion_attention":
    assert out["class_logits"].shape == (2, 5)
