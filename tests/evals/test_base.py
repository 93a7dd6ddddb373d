"""docs/evaluation.md's example of a new evaluator type, written without the trainer's code,
runs as the trainer runs evaluators: built from `config.evals`, given the generator as a
function and the generators' variables."""

import os
import re

import ml_collections
import numpy as np
import pytest

from colorjax import train
from colorjax.color import lab
from colorjax.evals import base
from colorjax.evals import common
from colorjax.training import run_setup
from colorjax.training import steps
from tests.helpers import REPO_ROOT, tiny_config

pytestmark = pytest.mark.slow  # Builds and evaluates a model (~19 s).


@pytest.fixture
def mean_chroma_type():
  """The docs' code block, executed: it registers the type; unregistered afterwards."""
  text = open(os.path.join(REPO_ROOT, "docs", "evaluation.md")).read()
  (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S)
             if "EVALUATORS.register" in block]
  namespace = {}
  exec(compile(code, "docs/evaluation.md", "exec"), namespace)  # pylint: disable=exec-used
  yield namespace["MeanChroma"]
  base.EVALUATORS._entries.pop("mean_chroma")  # pylint: disable=protected-access


def test_the_docs_evaluator_scores_the_averaged_generator(mean_chroma_type, tmp_path):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.evals.chroma = ml_collections.ConfigDict({"type": "mean_chroma", "every": 0})
  setup = run_setup.RunSetup.create(config)
  state = setup.init_state()
  predictor = train.predictor(setup.parts)
  evaluators = common.build(config, predictor, setup.mesh, str(tmp_path))
  (chroma,) = [e for e in evaluators if isinstance(e, mean_chroma_type)]
  results = dict(chroma.run(steps.eval_variables(state), 0))

  # The same mean on the host, image by image, from the predictor on the eval split.
  batches, num_images = chroma.context.batches()
  expected = []
  for images, mask in batches:
    l, _ = lab.uint8_to_model_inputs(images)
    ab = np.asarray(predictor.predict(state.ema, l))
    expected.extend(np.hypot(ab[..., 0], ab[..., 1]).mean(axis=(1, 2))[np.asarray(mask)])
  assert chroma.num_images == num_images == len(expected) > 0
  assert results["mean_chroma"] == pytest.approx(float(np.mean(expected)), rel=1e-5)
  # An untrained U-Net predicts some colour: a zero would mean the variables were not used.
  assert results["mean_chroma"] > 0
  assert isinstance(results["mean_chroma"], float)  # A scalar: TensorBoard and the eval JSON.
