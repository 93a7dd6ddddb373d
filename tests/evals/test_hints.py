"""The "hints" evaluator (colorjax/evals/hints.py): metrics by the number of hints revealed.

The `configs/hints.py:tiny` recipe's eval record (conftest's `hints_workdir`), and every kind of
objective and generator trained with hint channels.
"""

import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from colorjax import train
from colorjax.training import builders
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # A trained hint model; every objective trained with hints.


def test_eval_json_scores_each_hint_count(hints_workdir):
  record = json.load(open(f"{hints_workdir}/eval/latest.json"))
  assert set(record["by_hint_count"]) == {"0", "10"}
  # Zero revealed hints is the automatic result the colorization evaluator scores.
  assert record["by_hint_count"]["0"]["psnr"] == pytest.approx(record["model"]["psnr"], abs=1e-4)
  assert not any(k.startswith("hints_") for k in record["model"])


@pytest.mark.parametrize("name", ["regression_l1", "colorful", "wgan_gp", "fusion_attention"])
def test_every_objective_and_generator_trains_with_hints(name, tmp_path):
  """Regression, classification (Zhang et al. 2016's CNN), a GAN with n_critic > 1 and the
  fusion generator: each takes the hint channels and scores by hint count."""
  config = tiny_config(name)
  with config.unlocked():
    config.model.hints = True
    config.color.prior_num_images = 6
    config.evals = ml_collections.ConfigDict({
        "metrics": {"type": "colorization", "every": 0},
        "hints": {"type": "hints", "every": 0, "counts": (0, 5), "seed": 0}})
  state = train.train_and_evaluate(config, str(tmp_path))
  generator, _ = builders.make_generator(config)
  variables = {"params": state.ema["params"], "batch_stats": state.ema["batch_stats"]}
  size = config.data.image_size
  out = generator.apply(variables, jnp.zeros((1, size, size, 4)), train=False)
  assert out["ab"].shape == (1, size, size, 2)  # Its input: L, hint a, hint b, mask...
  with pytest.raises(Exception):
    generator.apply(variables, jnp.zeros((1, size, size, 1)), train=False)  # ...not L alone.
  record = json.load(open(tmp_path / "eval" / "latest.json"))
  for count in ("0", "5"):
    assert np.isfinite(record["by_hint_count"][count]["psnr"]), count
