"""pix2pix colorization (Isola et al. 2017): U-Net + 70x70 PatchGAN, vanilla GAN + 100 * L1.

The pix2pix defaults for colorization: Adam 2e-4 (beta1 0.5), lambda_L1 = 100, BatchNorm,
dropout as the only noise, learning rate constant for the first half and linearly decayed to zero.
At 256 px use `--config.data.image_size=256 --config.model.generator_kwargs.num_downs=8` (unet_256).

  python -m colorjax.main --config=configs/pix2pix.py --workdir=runs/pix2pix

The default trains on the embedded photos at 64 px (see configs/lsgan.py for the speed).
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.loss.gan = "vanilla"
  config.loss.l1_weight = 100.0
  config.optimizer.schedule = "linear_decay"
  return config
