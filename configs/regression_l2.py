"""Pure L2 regression: the pix2pix U-Net trained with L2 on ab, no discriminator.

The baseline every GAN and the classification method are compared with: L2 regression
averages plausible colours, so it tends to desaturate.

  python -m colorjax.main --config=configs/regression_l2.py --workdir=runs/regression_l2
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.model.discriminator = "none"
  config.loss.gan = "none"
  config.loss.l1_weight = 0.0
  config.loss.l2_weight = 1.0
  return config
