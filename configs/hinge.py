"""Hinge GAN with a spectrally normalised PatchGAN (SAGAN / Miyato et al. 2018), + 100 * L1.

  python -m colorjax.main --config=configs/hinge.py --workdir=runs/hinge

600 steps of batch 8 at 64 px on the embedded photos take about 7 minutes on 2 CPU cores (the step
trains at 12.9 images/s; benchmarks/README.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "hinge"
  config.model.discriminator_kwargs = {"norm": "none", "spectral_norm": True}
  config.loss.l1_weight = 100.0
  return config_base.with_variant(config, variant)
