"""The jitted train step (colorjax/training/steps.py, built by colorjax/training/run_setup.py): bf16
compute with float32 state, 8 devices against one, the averaged weights' warm-up decay.

A non-finite loss in the trainer: tests/test_train.py.
"""

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.training import run_setup
from colorjax.training import steps
from tests.helpers import photo_batch, tiny_config


def _first_step(dtype: str, batch: np.ndarray):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.dtype = dtype
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  setup = run_setup.RunSetup.create(config, mesh)
  state = setup.init_state()
  step = setup.train_step()
  return step(state, {"image": jax.device_put(batch, NamedSharding(mesh, P("data")))})


@pytest.mark.slow  # Two train steps compiled (~30-50 s).
def test_bfloat16_computes_in_bf16_keeps_float32_state_and_close_losses():
  batch = photo_batch()  # Crops of a real photo (astronaut), 16 px.
  state_32, metrics_32 = _first_step("float32", batch)
  state_16, metrics_16 = _first_step("bfloat16", batch)

  # Parameters, optimizer moments, BatchNorm statistics and the EMA stay float32 ...
  for path, leaf in jax.tree_util.tree_leaves_with_path(state_16):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32, jax.tree_util.keystr(path)
  # ... the losses are float32 scalars ...
  for key, value in metrics_16.items():
    assert value.dtype == jnp.float32, key
  # ... and the modules really compute in bf16 (the outputs differ from float32's).
  assert float(metrics_16["g_l1"]) != float(metrics_32["g_l1"])
  for key in ("g_l1", "g_gan", "g_loss", "d_loss", "d_gan"):
    np.testing.assert_allclose(float(metrics_16[key]), float(metrics_32[key]), rtol=0.05,
                               err_msg=key)
  del state_32


def _run_step_on(devices, config, batch):
  mesh = Mesh(np.array(devices), ("data",))
  setup = run_setup.RunSetup.create(config, mesh)
  state = setup.init_state()
  step = setup.train_step()
  for _ in range(2):
    state, metrics = step(state, {"image": jax.device_put(batch, NamedSharding(mesh, P("data")))})
  return jax.device_get(metrics), jax.device_get(state.g.params)


@pytest.mark.slow  # Two train steps compiled (~40-50 s).
def test_eight_devices_match_one_device(tiny_lsgan_config):
  assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
  batch = photo_batch()
  metrics_1, params_1 = _run_step_on(jax.devices()[:1], tiny_lsgan_config, batch)
  metrics_8, params_8 = _run_step_on(jax.devices(), tiny_lsgan_config, batch)
  for key in metrics_1:
    np.testing.assert_allclose(metrics_8[key], metrics_1[key], rtol=2e-4, atol=1e-5, err_msg=key)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               params_1, params_8)


def test_averaged_weights_forget_the_initialisation_at_any_run_length():
  """A fixed decay of 0.999 keeps 0.999^600 = 55% of the initial weights after 600 steps; the
  warm-up decay keeps well under 1% of them after a few hundred steps, and still averages."""
  for num_steps in (10, 100, 600, 5000):
    ema, params = {"w": jnp.zeros(())}, {"w": jnp.ones(())}  # Init 0, trained weights 1.
    for t in range(1, num_steps + 1):
      ema = steps.update_ema(0.999, jnp.asarray(t), ema, params)
    initial_share = 1.0 - float(ema["w"])
    assert initial_share < (0.35 if num_steps == 10 else 0.01), (num_steps, initial_share)
  assert float(steps.ema_decay_at(0.999, jnp.asarray(100000))) == pytest.approx(0.999)
  assert float(steps.ema_decay_at(0.999, jnp.asarray(90))) == pytest.approx(91 / 100)
