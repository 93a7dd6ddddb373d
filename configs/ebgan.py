"""EBGAN (Zhao et al. 2017) as Fabbri & Islam 2017 ran it: autoencoder discriminator, + 100 L1.

D reconstructs the (L, ab) pair; its energy is the per-sample MSE on normalised values. D loss
E(real) + max(0, m - E(fake)); G loss E(fake). The margin m defaults to Fabbri & Islam's m = 80 on the
0-255 scale converted to normalised MSE (80 / 127.5^2 ~ 0.0049): `--config.loss.ebgan_margin=M`.

  python -m colorjax.main --config=configs/ebgan.py --workdir=runs/ebgan

600 steps of batch 8 at 64 px on the embedded photos take about 7 minutes on 2 CPU cores (the step
trains at 13.2 images/s; benchmarks/README.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "ebgan"
  config.model.discriminator = "ebgan_ae"
  config.model.discriminator_kwargs = {"width": 64}
  config.loss.l1_weight = 100.0
  return config_base.with_variant(config, variant)
