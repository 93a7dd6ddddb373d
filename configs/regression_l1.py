"""Pure L1 regression: the pix2pix U-Net trained with L1 on ab, no discriminator.

The baseline every GAN and the classification method are compared with: L1 regression
averages plausible colours, so it tends to desaturate.

  python -m colorjax.main --config=configs/regression_l1.py --workdir=runs/regression_l1
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.model.discriminator = "none"
  config.loss.gan = "none"
  config.loss.l1_weight = 1.0
  config.loss.l2_weight = 0.0
  return config
