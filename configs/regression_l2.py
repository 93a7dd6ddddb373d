"""Pure L2 regression: the pix2pix U-Net trained with L2 on ab, no discriminator.

The baseline every GAN and the classification method are compared with: L2 regression
averages plausible colours, so it tends to desaturate.

  python -m colorjax.main --config=configs/regression_l2.py --workdir=runs/regression_l2

600 steps of batch 8 at 64 px on the embedded photos take about 4 minutes on 2 CPU cores (the step
trains at 22.9 images/s; benchmarks/README.md). The CIFAR-10 recipe (docs/quality.md):

  python -m colorjax.main --config=configs/regression_l2.py:cifar --workdir=runs/l2_cifar

1000 steps of batch 64: 11 minutes on the (less) busy 2-core machine it was measured on (112
images/s). On 503 CIFAR-10 test images: PSNR 25.31 dB, AuC 0.914, colourfulness 13.2, |delta CF|
18.4; gray baseline 24.41 dB, AuC 0.902, |delta CF| 31.1.
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_unet_regression_config()
  config.loss.l1_weight = 0.0
  config.loss.l2_weight = 1.0
  return config_base.with_variant(config, variant)
