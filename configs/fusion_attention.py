"""Global-local fusion with self-attention (seeds 001 and 003; Iizuka et al. 2016 + SAGAN).

Encoder -> a global branch (strided convs + dense) tiled and fused into the mid-level local
features -> a SAGAN self-attention block -> decoder with upsampling -> tanh ab. Trained as a
conditional LSGAN with a PatchGAN and 100 * L1.

  python -m colorjax.main --config=configs/fusion_attention.py --workdir=runs/fusion_attention

On the embedded photos (64 px, batch 8, 600 steps) this takes about 9 minutes on 2 CPU cores.

With a labelled dataset, Iizuka et al.'s auxiliary classification loss trains the global branch
to recognise the scene class as well: `loss.class_weight` weights the softmax cross-entropy of the
branch's class logits (logged as g_class, with g_class_accuracy), and `num_classes` must equal
the dataset's number of classes (a mismatch is reported with the right number). Labels come from
TFDS datasets with a `label` feature or from a folder with one subfolder per class, e.g. the
CIFAR-10 JPEG folders:

  python -m colorjax.main --config=configs/fusion_attention.py --workdir=runs/fusion_cifar \
    --config.data.name=../shared/data/cifar10/train --config.data.image_size=32 \
    --config.batch_size=32 --config.loss.class_weight=1.0 \
    --config.model.generator_kwargs.num_classes=10
"""

from colorjax import config_base


def get_config():
  config = config_base.get_base_config()
  config.model.generator = "fusion_attention"
  # num_classes > 0 adds the global branch's classifier (for loss.class_weight > 0).
  config.model.generator_kwargs = {"width": 64, "num_attention_blocks": 1, "num_classes": 0}
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  return config
