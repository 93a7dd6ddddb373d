"""Conditional LSGAN colorization: pix2pix U-Net + 70x70 PatchGAN, LSGAN + 100 * L1.

Reproduces the LSGAN variant of seed 000's GAN comparison (Mao et al. 2017 losses on the pix2pix
networks, Adam 2e-4, beta1 0.5). The default trains on the embedded scikit-image photos at 64 px,
which needs no download:

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan

2000 steps of batch 16 take about 15 minutes on 2 CPU cores (about 35 images/s); the sample grids
under runs/lsgan/samples/ show plausible colours on the training photos, and
`--mode=eval` writes runs/lsgan/eval/latest.json (PSNR, SSIM, colourfulness, AuC, with the gray
baseline beside each). On CIFAR-10 JPEGs (a folder) at 32 px:

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan_cifar \
    --config.data.name=../shared/data/cifar10/train --config.data.image_size=32 \
    --config.model.generator_kwargs.num_downs=5 --config.batch_size=64
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  return config
