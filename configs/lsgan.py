"""Conditional LSGAN colorization: pix2pix U-Net + 70x70 PatchGAN, LSGAN + 100 * L1.

The LSGAN variant of Fabbri & Islam 2017's comparison of GAN objectives for colorization: the
least-squares losses of Mao et al. 2017 on the pix2pix networks of Isola et al. 2017, Adam 2e-4,
beta1 0.5. The default trains on the embedded scikit-image photos at 64 px,
which needs no download:

  python -m colorjax.main --config=configs/lsgan.py --workdir=runs/lsgan

600 steps of batch 8 take about 6 minutes on 2 CPU cores (14 images/s; measured 371 s wall,
compile and evaluation included). runs/lsgan/samples/ then shows the six training photos in
their own colours (orange suit, red cup), and runs/lsgan/eval/latest.json gives PSNR 29.7 dB
(raw generator 29.4) against 18.9 for the gray baseline (those same photos: a smoke test, not a
benchmark; docs/quality.md). On CIFAR-10 at 32 px (TFDS's cifar10, or --config.data.name=DIR
for image folders; docs/data.md):

  python -m colorjax.main --config=configs/lsgan.py:cifar --workdir=runs/lsgan_cifar

1000 steps of batch 64: 46 minutes on the busy 2-core machine it was measured on (27 images/s;
8-13 minutes idle). On 503 CIFAR-10 test images: PSNR 24.77 dB, AuC 0.909, colourfulness 16.6,
|delta CF| 17.0; gray baseline 24.41 dB, AuC 0.902, |delta CF| 31.1 (docs/quality.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  return config_base.with_variant(config, variant)
