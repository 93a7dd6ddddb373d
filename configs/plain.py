"""A plain conv stack (13 convs + BN + ReLU, two transposed convs; DCGAN-style) with label tricks.

Vanilla GAN + 100 * L1 against a global discriminator, with one-sided label smoothing (real
target 0.9; Salimans et al. 2016) and 5% label flipping, which keep D from winning early.

  python -m colorjax.main --config=configs/plain.py --workdir=runs/plain

600 steps of batch 8 at 64 px on the embedded photos take about 10 minutes on 2 CPU cores (the
step trains at 8.6 images/s; benchmarks/README.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.model.generator = "plain"
  config.model.generator_kwargs = {"width": 64}
  config.model.discriminator = "global"
  config.model.discriminator_kwargs = {"width": 64}
  config.loss.gan = "vanilla"
  config.loss.l1_weight = 100.0
  config.loss.label_smoothing = 0.1
  config.loss.flip_prob = 0.05
  return config_base.with_variant(config, variant)
