"""DCGAN objective (the "regular GAN" of Fabbri & Islam 2017): U-Net + DCGAN discriminator + 100 L1.

Non-saturating vanilla GAN loss; the discriminator scores the whole (L, ab) image with one logit
(strided convs, BatchNorm, LeakyReLU, global pooling; Radford et al. 2016), as Fabbri & Islam
2017 used it, rather than pix2pix's patches.

  python -m colorjax.main --config=configs/dcgan.py --workdir=runs/dcgan

600 steps of batch 8 at 64 px on the embedded photos take about 7 minutes on 2 CPU cores (the step
trains at 13.9 images/s; benchmarks/README.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "vanilla"
  config.model.discriminator = "global"
  config.model.discriminator_kwargs = {"width": 64}
  config.loss.l1_weight = 100.0
  return config_base.with_variant(config, variant)
