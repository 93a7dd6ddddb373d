"""WGAN-GP (Gulrajani et al. 2017): gradient penalty (lambda 10) instead of clipping, + 100 * L1.

Critic: PatchGAN with layer norm (batch norm would couple the per-sample gradient penalty across
the batch), Adam 1e-4 with betas (0.0, 0.9), 5 critic updates per generator update in one jitted
step; the penalty is computed inside the step on interpolates of real and generated ab.

  python -m colorjax.main --config=configs/wgan_gp.py --workdir=runs/wgan_gp

600 steps of batch 8 at 64 px on the embedded photos take about 19 minutes on 2 CPU cores (the
step trains at 4.5 images/s, 5 critic updates with the penalty per step; benchmarks/README.md).
Its earlier CIFAR-10 numbers were taken on a generator average that was mostly initialisation and
are withdrawn; the CIFAR-10 recipe (`:cifar`, docs/quality.md) has not been rerun for it.
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.loss.gan = "wgan_gp"
  config.loss.n_critic = 5
  config.loss.gp_weight = 10.0
  config.loss.l1_weight = 100.0
  config.model.discriminator_kwargs = {"norm": "layer"}
  config.optimizer.learning_rate = 1e-4
  config.optimizer.b1 = 0.0
  config.optimizer.b2 = 0.9
  return config_base.with_variant(config, variant)
