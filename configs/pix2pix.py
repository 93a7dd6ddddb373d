"""pix2pix colorization (Isola et al. 2017): U-Net + 70x70 PatchGAN, vanilla GAN + 100 * L1.

The pix2pix defaults for colorization: Adam 2e-4 (beta1 0.5), lambda_L1 = 100, BatchNorm,
dropout as the only noise, learning rate constant for the first half and linearly decayed to zero.
At 256 px use `--config.data.image_size=256 --config.model.generator_kwargs.num_downs=8` (unet_256).

  python -m colorjax.main --config=configs/pix2pix.py --workdir=runs/pix2pix

600 steps of batch 8 at 64 px on the embedded photos take about 7 minutes on 2 CPU cores (the step
trains at 14.0 images/s; benchmarks/README.md). Its earlier CIFAR-10 numbers were taken on a
generator average that was mostly initialisation and are withdrawn; the CIFAR-10 recipe
(`--config=configs/pix2pix.py:cifar`, docs/quality.md) has not been rerun for this config.
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "vanilla"
  config.loss.l1_weight = 100.0
  config.optimizer.schedule = "linear_decay"
  return config_base.with_variant(config, variant)
