"""User-guided colorization (Zhang et al. 2017): configs/lsgan.py with local colour hints.

The generator takes L plus a sparse map of ab hints and its mask (colorjax/color/hints.py), and
learns from hints simulated from the truth in every train step: a geometric number of points
(p = 1/8, so one image in eight has none and the model still colorizes automatically), square
patches of 1-9 px, each the truth's mean ab over it. Everything else (networks, LSGAN + 100 L1,
seed, steps, batch, data) is configs/lsgan.py's, so each variant compares with that config's
same variant trained without hints. `evals.hints` scores 0-100 random hints from the truth.

  python -m colorjax.main --config=configs/hints.py --workdir=runs/hints
  python -m colorjax.main --config=configs/hints.py:cifar --workdir=runs/hints_cifar
"""

import ml_collections

from colorjax.core import config_base

# Hint counts evaluated, as in Zhang et al. 2017's PSNR-vs-points sweep.
EVAL_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  config.model.hints = True
  # PSNR, colourfulness, ... with 0-100 random hints from the truth at a fixed seed, patches of
  # the paper's sweep (6 px at 256 px; scaled to the render size by the evaluator).
  config.evals.hints = ml_collections.ConfigDict(
      {"type": "hints", "every": 0, "counts": EVAL_COUNTS, "seed": 0})
  config = config_base.with_variant(config, variant)
  if variant == "tiny":
    config.evals.hints.counts = (0, 10)
  return config
