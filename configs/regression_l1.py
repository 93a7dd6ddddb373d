"""Pure L1 regression: the pix2pix U-Net trained with L1 on ab, no discriminator.

The baseline every GAN and the classification method are compared with: L1 regression
averages plausible colours, so it tends to desaturate.

  python -m colorjax.main --config=configs/regression_l1.py --workdir=runs/regression_l1

600 steps of batch 8 at 64 px on the embedded photos take about 4 minutes on 2 CPU cores (the step
trains at 24.6 images/s; benchmarks/README.md). On CIFAR-10 at 32 px (200 steps of batch 32, 285
test images; docs/comparison.md) it scored PSNR 24.41 dB, AuC 0.906, |delta CF| 15.7 (muted
colours); the gray baseline scores PSNR 24.49 dB, AuC 0.905, |delta CF| 30.9.
"""

from colorjax import config_base


def get_config(variant: str = ""):
  config = config_base.get_unet_regression_config()
  config.loss.l1_weight = 1.0
  config.loss.l2_weight = 0.0
  return config_base.with_variant(config, variant)
