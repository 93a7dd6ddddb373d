"""Zhang's CIC network trained as a regressor with L1 on ab (no GAN; Zhang et al. 2016).

The same "zhang_cic" network as configs/colorful.py, but its tanh regression head is trained with
the L1 loss on normalised ab (ab / 110): the baseline that the classification paper argues
against (desaturated, averaged colours).

  python -m colorjax.main --config=configs/colorful_l1.py --workdir=runs/colorful_l1

600 steps of batch 8 at 64 px on the embedded photos take about 4 minutes on 2 CPU cores (the step
trains at 26.3 images/s; benchmarks/README.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_zhang_cic_config()
  config.loss.l1_weight = 1.0
  config.loss.l2_weight = 0.0
  return config_base.with_variant(config, variant)
