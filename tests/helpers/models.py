"""Models initialised and run cheaply on CPU, for tests/models/."""

import functools

import jax

# rbg keys: Flax init derives one key per parameter, and with the default threefry PRNG
# compiling those derivations takes most of a test's time on CPU.
key = functools.partial(jax.random.key, impl="rbg")
RNGS = {"params": key(0), "dropout": key(1)}


def random_lightness(size, batch=2, seed=0):
  """Normalised L in [-1, 1]: (batch, size, size, 1)."""
  return jax.random.uniform(key(seed), (batch, size, size, 1), minval=-1, maxval=1)


def init_and_train_apply(model, *inputs):
  """Initialises and runs one training-mode forward pass, jitted as one program (fast on CPU)."""
  def run(*inputs):
    variables = model.init(RNGS, *inputs, train=False)
    return model.apply(variables, *inputs, train=True, mutable=["batch_stats"],
                       rngs={"dropout": key(2)})
  return jax.jit(run)(*inputs)
