"""Global-local fusion with self-attention (seeds 001 and 003; Iizuka et al. 2016 + SAGAN).

Encoder -> a global branch (strided convs + dense) tiled and fused into the mid-level local
features -> a SAGAN self-attention block -> decoder with upsampling -> tanh ab. Trained as a
conditional LSGAN with a PatchGAN and 100 * L1.

  python -m colorjax.main --config=configs/fusion_attention.py --workdir=runs/fusion_attention
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.model.generator = "fusion_attention"
  config.model.generator_kwargs = {"width": 64, "num_attention_blocks": 1}
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  return config
