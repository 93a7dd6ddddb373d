"""Global-local fusion with self-attention (Iizuka et al. 2016 + SAGAN, Zhang et al. 2019).

Encoder -> a global branch (strided convs + dense) tiled and fused into the mid-level local
features -> a SAGAN self-attention block -> decoder with upsampling -> tanh ab. Trained as a
conditional LSGAN with a PatchGAN and 100 * L1.

  python -m colorjax.main --config=configs/fusion_attention.py --workdir=runs/fusion_attention

600 steps of batch 8 at 64 px on the embedded photos take about 7 minutes on 2 CPU cores (the step
trains at 13.0 images/s; benchmarks/README.md).

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

With --config.num_train_steps=300 this ran in 4 min 23 s on 2 CPU cores (50 images/s): the
branch's class cross-entropy fell from 2.31 (chance: ln 10 = 2.30) to 2.11 and its training
accuracy rose from 14% to 21-23% (chance 10%), from the L channel alone; eval on 243 held-out
images gave PSNR 23.75 dB and AuC 0.899 (gray: 23.95 dB, 0.898). Real runs train for epochs.
"""

from colorjax.core import config_base


def get_config(variant: str = ""):
  config = config_base.get_base_config()
  config.model.generator = "fusion_attention"
  # num_classes > 0 adds the global branch's classifier (for loss.class_weight > 0).
  config.model.generator_kwargs = {"width": 64, "num_attention_blocks": 1, "num_classes": 0}
  config.loss.gan = "lsgan"
  config.loss.l1_weight = 100.0
  return config_base.with_variant(config, variant)
