"""The run's setup (colorjax/training/run_setup.py) is built once per run: the config validated
once and the train state's shapes traced (`jax.eval_shape` of `steps.init_state`) once, shared
by preflight, the trainer and --mode=eval."""

import json
import os
import subprocess
import sys

import jax
import pytest

from colorjax import preflight
from colorjax.training import run_setup
from colorjax.training import steps
from tests.helpers import REPO_ROOT, tiny_config

# Runs `python -m colorjax.main ARGS` in-process with counters around the two calls and prints
# them as JSON on the last line of stdout.
_COUNTING_MAIN = """
import json, sys
import jax
from colorjax import main
from colorjax.training import run_setup, steps

counts = {"validate_config": 0, "state_eval_shape": 0}
validate, eval_shape = run_setup.validate_config, jax.eval_shape

def counting_validate(config):
  counts["validate_config"] += 1
  return validate(config)

def counting_eval_shape(fn, *args, **kwargs):
  if getattr(fn, "func", None) is steps.init_state:
    counts["state_eval_shape"] += 1
  return eval_shape(fn, *args, **kwargs)

run_setup.validate_config, jax.eval_shape = counting_validate, counting_eval_shape
code = main.main(sys.argv[1:])
print(json.dumps(counts))
sys.exit(code)
"""


def _counted_main(*args: str) -> dict[str, int]:
  result = subprocess.run([sys.executable, "-c", _COUNTING_MAIN, *args], cwd=REPO_ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_run_validates_once_and_traces_the_state_once(tmp_path):
  workdir = str(tmp_path / "run")
  once = {"validate_config": 1, "state_eval_shape": 1}
  # Training: preflight builds the setup, the trainer takes it over (and adds the prior).
  assert _counted_main("--config=configs/lsgan.py:tiny", f"--workdir={workdir}") == once
  # --mode=eval: the same for the evaluation of the checkpoint just written.
  assert _counted_main("--config=configs/lsgan.py:tiny", f"--workdir={workdir}",
                       "--mode=eval") == once


def test_setup_traces_once_and_the_prior_traces_nothing(monkeypatch, tmp_path):
  calls = []
  eval_shape = jax.eval_shape

  def counting(fn, *args, **kwargs):
    calls.append(getattr(fn, "func", fn))
    return eval_shape(fn, *args, **kwargs)
  monkeypatch.setattr(jax, "eval_shape", counting)
  config = tiny_config("lsgan")
  setup = preflight.check(config, str(tmp_path / "run"))
  assert calls == [steps.init_state]
  prior = run_setup.load_prior(config, str(tmp_path))
  with_prior = setup.with_prior(prior)
  assert calls == [steps.init_state]  # The prior reweights; the shapes are those traced.
  assert with_prior.abstract_state is setup.abstract_state
  assert setup.parts.pixel_weights is None and with_prior.parts.pixel_weights is not None
  # The same models: only the loss's and the eval's weights change.
  assert with_prior.parts.generator is setup.parts.generator


def test_batch_divisibility_is_checked_once_for_both_batches():
  config = tiny_config("lsgan")
  with config.unlocked():
    config.eval.batch_size = 12
  with pytest.raises(ValueError, match=r"eval.batch_size=12 must be divisible by the number of "
                                       r"devices \(8\); e.g. --config.eval.batch_size=8"):
    run_setup.RunSetup.create(config)


def test_unknown_generator_lists_valid_names(tiny_lsgan_config):
  with tiny_lsgan_config.unlocked():
    tiny_lsgan_config.model.generator = "unet3000"
  with pytest.raises(ValueError, match="valid names: .*unet"):
    run_setup.validate_config(tiny_lsgan_config)
