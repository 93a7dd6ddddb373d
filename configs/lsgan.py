"""Conditional LSGAN colorization: pix2pix U-Net + 70x70 PatchGAN, LSGAN + 100 * L1.

Reproduces the LSGAN variant of seed 000's GAN comparison (Mao et al. 2017 losses on the pix2pix
networks, Adam 2e-4, beta1 0.5). The default trains on the embedded scikit-image photos at 64 px,
which needs no download:

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan

600 steps of batch 8 take about 6 minutes on 2 CPU cores (14 images/s; measured 371 s wall,
compile and evaluation included). runs/lsgan/samples/ then shows plausible, still muted colours
on the six training photos, and runs/lsgan/eval/latest.json gives PSNR 20.2 dB against 18.9 for
the gray baseline, AuC 0.858 against 0.845 (those same photos: a smoke test, not a benchmark).
On CIFAR-10 JPEGs (a folder) at 32 px:

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan_cifar \
    --config.data.name=../shared/data/cifar10/train --config.data.image_size=32 \
    --config.model.generator_kwargs.num_downs=5 --config.batch_size=64 \
    --config.num_train_steps=20000
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  return config
