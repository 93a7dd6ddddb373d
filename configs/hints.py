"""User-guided colorization (Zhang et al. 2017): configs/lsgan.py with local colour hints.

The generator takes L plus a sparse map of ab hints and its mask (colorjax/color/hints.py), and
learns from hints simulated from the truth in every train step: a geometric number of points
(p = 1/8, so one image in eight has none and the model still colorizes automatically), square
patches of 1-9 px, each the truth's mean ab over it. Everything else (networks, LSGAN + 100 L1,
seed, steps, batch, data) is configs/lsgan.py's, so each variant compares with that config's
same variant trained without hints. `evals.hints` scores 0-100 random hints from the truth.

  python -m colorjax.main --config=configs/hints.py --workdir=runs/hints
  python -m colorjax.main --config=configs/hints.py:quick --workdir=runs/hints_quick
  python -m colorjax.main --config=configs/hints.py:cifar --workdir=runs/hints_cifar

`:quick` took 28 minutes on the 2-core machine under a load average of 15 (the train step
compiling for 6.5 of them; `configs/lsgan.py:quick` takes about a minute idle). On its six
training photos it reaches eval PSNR 26.7 dB (gray 19.2) and ignores hints, having memorised
their colours; on scenes whose colours only hints reveal, the same recipe learns to follow
them (docs/hints.md, tests/end_to_end/test_hints_follow.py).

`:cifar` (CIFAR-10 folders: --config.data.name=DIR): 1000 steps of batch 64, 10 minutes for its
last 500 on the idle 2-core machine (93 images/s; the first 500 ran at 5-9 images/s beside four
other jobs). On 512 CIFAR-10 test photos, 3 x 3 hints revealed from the truth: PSNR 25.13 dB
without hints, 28.33 with 10 (+3.2 dB), 31.37 with 100; configs/lsgan.py:cifar trained the same
way without hints: 24.84 dB (gray 24.41). On six full-size photos outside CIFAR-10: 22.22 dB
without hints, 25.10 with 10 (+2.9 dB); the no-hint model 21.80 (docs/hints.md).
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
  # PSNR, colourfulness, ... with 0-100 random hints from the truth at a fixed seed, each a
  # 3 x 3 render-pixel square as a user hint is (patch_size=0: the paper's 6 px at 256 px,
  # scaled to the render size; colorjax/evals/hints.py).
  config.evals.hints = ml_collections.ConfigDict(
      {"type": "hints", "every": 0, "counts": EVAL_COUNTS, "seed": 0, "patch_size": 3})
  config = config_base.with_variant(config, variant)
  if variant == "tiny":
    config.evals.hints.counts = (0, 10)
  return config
