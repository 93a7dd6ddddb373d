"""Colorful Image Colorization (Zhang et al., ECCV 2016): classification over ab bins.

The Zhang CNN ("zhang_cic") predicts a distribution over Q=261 in-gamut ab bins (grid 10) at 1/4
resolution, trained with the class-rebalanced cross-entropy (soft-encoding over 5 nearest bins,
sigma 5; prior smoothed with sigma 5, lambda 0.5) and decoded with the annealed mean (T=0.38).
The prior is computed over the training data on first use (or `python -m colorjax.main --mode=prior`) and
stored as <workdir>/color_prior.npz (every config computes it: eval reports the rebalanced
AuC). No discriminator. Adam 3e-5 x 10 as in the paper's Caffe
solver is slow for short runs; 1e-3 with beta1 0.9 trains within minutes here.

  python -m colorjax.main --config=configs/colorful.py --workdir=runs/colorful

600 steps of batch 8 at 64 px on the embedded photos take about 4.5 minutes on 2 CPU cores (the
step trains at 22.1 images/s; benchmarks/README.md). The sample grids show the annealed-mean
colours (more saturated than the L1/L2 regression configs). The CIFAR-10 recipe
(docs/quality.md):

  python -m colorjax.main --config=configs/colorful.py:cifar --workdir=runs/colorful_cifar

1000 steps of batch 64, on 503 CIFAR-10 test images: PSNR 23.83 dB, AuC 0.898, colourfulness
21.1, |delta CF| 13.4 (the most colourful, and the smallest colourfulness error, of the recipe's
models, but below gray on PSNR and AuC after 1.3 epochs); gray baseline 24.41 dB, AuC 0.902,
|delta CF| 31.1.
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_zhang_cic_config()
  config.loss.l1_weight = 0.0
  config.loss.ce_weight = 1.0
  config.color.decode = "annealed_mean"
  return config_base.with_variant(config, variant)
