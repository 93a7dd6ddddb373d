"""WGAN with weight clipping (Arjovsky et al. 2017), as Fabbri & Islam 2017 ran it, + 100 L1.

Critic: PatchGAN (BatchNorm, as the WGAN paper's DCGAN critic), RMSProp 5e-5, 5 critic updates per
generator update inside one jitted step, weights clipped to [-0.01, 0.01] after each update.
(The critic loop runs inside the jitted step, in a lax.fori_loop.)

  python -m colorjax.main --config=configs/wgan.py --workdir=runs/wgan

600 steps of batch 8 at 64 px on the embedded photos take about 13 minutes on 2 CPU cores (the
step trains at 6.6 images/s, 5 critic updates per step; benchmarks/README.md).
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "wgan"
  config.loss.n_critic = 5
  config.loss.clip = 0.01
  config.loss.l1_weight = 100.0
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 5e-5
  return config_base.with_variant(config, variant)
