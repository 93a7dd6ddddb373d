"""Numerics: a non-finite loss stops training with the last good checkpoint kept; bf16 compute."""

import os

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import train
from colorjax.core import checkpointing
from colorjax.core import distributed
from colorjax.training import run_setup
from tests.helpers import tiny_config
from tests.helpers import photo_batch


def test_non_finite_loss_names_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path):
  # Warm-up from 0 makes step 1 a no-op update (finite, checkpointed); step 2 then uses a
  # learning rate of 5e29 and overflows. Step 1's save is still in flight when step 2 fails.
  config = tiny_config("lsgan")
  with config.unlocked():
    config.num_train_steps = 6
    config.checkpoint_every_steps = 1
    config.eval_every_steps = config.sample_every_steps = 1000
    config.optimizer.learning_rate = 1e30
    config.optimizer.warmup_steps = 2
  workdir = str(tmp_path)
  with pytest.raises(train.NonFiniteLossError) as error:
    train.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert "at step 2" in message, message
  assert any(term in message for term in ("g_loss", "d_loss", "g_gan", "d_gan")), message

  # No checkpoint of the non-finite state; the one before it restores, finite.
  entries = os.listdir(os.path.join(workdir, "checkpoints"))
  assert entries == ["1"], entries
  mesh = distributed.make_data_mesh()
  setup = run_setup.RunSetup.create(config, mesh)
  manager = checkpointing.make_manager(workdir, 3, read_only=True)
  state = checkpointing.restore(manager, 1, checkpointing.abstract_with_shardings(
      setup.abstract_state, setup.state_shardings), None)
  assert int(state.step) == 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def _first_step(dtype: str, batch: np.ndarray):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.dtype = dtype
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  setup = run_setup.RunSetup.create(config, mesh)
  state = setup.init_state()
  step = setup.train_step()
  return step(state, {"image": jax.device_put(batch, NamedSharding(mesh, P("data")))})


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
