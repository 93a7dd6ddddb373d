"""Image-level discriminators (colorjax/models/discriminators.py): the global one and EBGAN's
autoencoder. The PatchGAN: tests/models/test_layers.py (both convolution implementations)."""

import jax
import jax.numpy as jnp
import pytest

from colorjax.models import build_discriminator
from colorjax.training import objectives
from tests.helpers.models import init_and_train_apply, key, random_lightness

pytestmark = pytest.mark.slow  # Each test compiles a discriminator's init and train step (3-7 s).


def _pair(size, batch=2):
  ab = jax.random.uniform(key(5), (batch, size, size, 2), minval=-1, maxval=1)
  return random_lightness(size, batch), ab


@pytest.mark.parametrize("kwargs", [
    {"width": 8},
    {"width": 8, "norm": "layer"},
    {"width": 8, "norm": "none", "spectral_norm": True},
])
def test_global_discriminator_returns_one_logit_per_image(kwargs):
  disc = build_discriminator("global", kwargs, jnp.float32)
  out, _ = init_and_train_apply(disc, *_pair(32))
  assert out.shape == (2, 1)


def test_ebgan_autoencoder_returns_nonnegative_energy_per_sample():
  disc = build_discriminator("ebgan_ae", {"width": 8}, jnp.float32)
  l, ab = _pair(32, batch=3)
  variables = disc.init(key(0), l, ab, train=False)
  energy = disc.apply(variables, l, ab, train=False)
  assert energy.shape == (3,) and bool(jnp.all(energy >= 0))
  # Each sample's energy is its own: changing sample 0 leaves sample 1 in eval mode untouched.
  energy2 = disc.apply(variables, l, ab.at[0].set(0.0), train=False)
  assert float(energy2[0]) != float(energy[0]) and float(energy2[1]) == float(energy[1])
  loss = objectives.OBJECTIVES.get("ebgan").d_loss(energy, energy)
  assert loss.shape == ()
