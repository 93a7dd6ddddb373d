"""The keys every config shares, with the pix2pix colorization defaults.

Config files under configs/ start from `get_base_config()`, change what their method needs and
end with `with_variant(config, variant)`: `--config=configs/lsgan.py:cifar` selects a variant
(as big_vision's `get_config(arg)` does), `--config.<key>=value` overrides any key, and a
mistyped key fails because configs are locked.

Variants (every config has each):
  ""       the default: the embedded scikit-image photos at 64 px, minutes on a CPU.
  "cifar"  the CIFAR-10 recipe at 32 px, sized for a 2-core CPU (docs/quality.md): TFDS
           `cifar10`, or `--config.data.name=DIR` for JPEG/PNG folders with train/ and test/.
  "quick"  the embedded photos at 32 px for 300 steps: a run that visibly colorizes its
           training photos in about a minute on CPU (tests/end_to_end/test_quality.py bounds
           its output).
  "tiny"   seconds per run on CPU, for tests: 16 px, 2 steps, the smallest networks.
"""

from __future__ import annotations

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # The defaults size the offline demo (embedded photos, 64 px) to minutes on a 2-core CPU;
  # real runs raise batch_size and num_train_steps (see each config's docstring).
  c.batch_size = 8  # Global: split over all devices of all processes.
  c.num_train_steps = 600
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  # Default cadences of the evaluators in `c.evals` below: `every: 0` there means
  # eval_every_steps, or sample_every_steps for the sample grid.
  c.eval_every_steps = 600
  c.sample_every_steps = 200
  c.max_checkpoints_to_keep = 3
  c.dtype = "float32"  # Computation dtype ("bfloat16" for mixed precision); params stay float32.

  c.data = ml_collections.ConfigDict()
  # Embedded real photos: works offline. See colorjax/data/sources.py.
  c.data.name = "skimage_photos"
  c.data.data_dir = ""  # TFDS data_dir ("" = TFDS_DATA_DIR or ~/tensorflow_datasets).
  c.data.image_size = 64
  c.data.train_split = ""  # "" = the dataset's default.
  c.data.eval_split = ""
  c.data.validation_percent = 5.0  # For folders of photos: share of files held out (by path hash).
  c.data.min_crop_scale = 0.35  # Random resized crop: smallest area fraction.
  c.data.random_flip = True
  c.data.num_workers = 0  # grain worker processes (0 = decode in the main process's threads).
  c.data.read_threads = 2

  c.model = ml_collections.ConfigDict()
  c.model.generator = "unet"
  # pix2pix U-Net: depth, decoder upsampling ("transposed" | "resize_conv", Odena et al. 2016)
  # and the dropout of its innermost decoder levels (the GAN generator's noise source).
  c.model.generator_kwargs = ml_collections.ConfigDict(
      {"num_downs": 6, "upsampling": "transposed", "dropout": 0.5})
  c.model.discriminator = "patchgan"  # "none" for pure regression/classification.
  c.model.discriminator_kwargs = ml_collections.ConfigDict()
  c.model.ema_decay = 0.999  # Generator EMA used for eval and colorize; 0 turns it off.
  # How the convolutions are computed: "xla" (XLA's convolution), "im2col" (one matmul per
  # conv; XLA's CPU convolution gradients are ~10x slower) or "auto" (im2col on CPU, xla
  # elsewhere), resolved once when the trainer builds the models. Parameters are the same
  # either way; colorize, serve and export resolve "auto" for where they run.
  c.model.conv = "auto"
  # Local colour hints (Zhang et al. 2017; colorjax/color/hints.py): the generator also takes a
  # sparse ab hint map and its mask, simulated from the truth in training as `c.hints` says.
  c.model.hints = False

  # How training simulates hints when model.hints is on (colorjax/color/hints.py, HintConfig):
  # a geometric number of points (stop probability p, truncated at max_points), square patches
  # of min_patch-max_patch render pixels, each the truth's mean ab over it.
  c.hints = ml_collections.ConfigDict(
      {"p": 0.125, "min_patch": 1, "max_patch": 9, "max_points": 32})

  c.loss = ml_collections.ConfigDict()
  c.loss.gan = "lsgan"  # An objective from colorjax/training/objectives.py, or "none".
  c.loss.gan_weight = 1.0
  c.loss.l1_weight = 100.0
  c.loss.l2_weight = 0.0
  c.loss.ce_weight = 0.0  # Rebalanced cross-entropy over ab bins (needs a generator with logits).
  # Auxiliary image classification (Iizuka et al.) on the generator's global branch: needs a
  # labelled dataset and model.generator_kwargs.num_classes equal to its number of classes.
  c.loss.class_weight = 0.0
  c.loss.n_critic = 1  # Discriminator updates per generator update.
  c.loss.gp_weight = 0.0  # WGAN-GP gradient penalty.
  c.loss.clip = 0.0  # WGAN weight clipping (0 = off).
  # EBGAN margin in normalised MSE units (-1 = Fabbri & Islam 2017's m=80 on 0-255).
  c.loss.ebgan_margin = -1.0
  c.loss.label_smoothing = 0.0  # One-sided: real target = 1 - smoothing.
  c.loss.noisy_labels = False  # Real targets in [0.9, 1], fake in [0, 0.1].
  c.loss.flip_prob = 0.0  # Swap real/fake targets with this probability.

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # adam | rmsprop
  c.optimizer.learning_rate = 2e-4
  c.optimizer.d_learning_rate = -1.0  # -1 = same as the generator's.
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  c.optimizer.schedule = "constant"  # constant | linear_decay (pix2pix) | cosine
  c.optimizer.decay_start_fraction = 0.5  # linear_decay: constant until here, then to zero.
  c.optimizer.warmup_steps = 0

  c.color = ml_collections.ConfigDict()
  c.color.grid = 10  # ab bin size for classification (Zhang et al.).
  c.color.bins_path = ""  # Optional (Q, 2) .npy of bin centres, e.g. Zhang's 313 bins.
  # Class-rebalancing prior (.npz from `python -m colorjax.main --mode=prior`).
  c.color.prior_path = ""
  c.color.num_neighbors = 5  # Soft-encoding: k nearest bins.
  c.color.sigma = 5.0
  c.color.rebalance_lambda = 0.5
  c.color.temperature = 0.38  # Annealed-mean decoding.
  # regression | annealed_mean | mode | mean (colorjax/training/classification.py).
  c.color.decode = "regression"
  c.color.prior_num_images = 2000  # Training images the colour prior is estimated from (-1 = all).

  # The eval data every evaluator reads, and the checkpoint --mode=eval scores.
  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 16
  c.eval.num_images = 256  # N images evenly spaced over the eval split (-1 = all).
  c.eval.step = -1  # --mode=eval restores this checkpoint step (-1 = latest).

  # Evaluators by name, as big_vision's `config.evals`: `type` is one of colorjax/evals/
  # base.py's registry, `every` its cadence in steps (0 = the default cadence above), the rest
  # its options. Every evaluator also runs at the last step, and all of them in --mode=eval.
  c.evals = ml_collections.ConfigDict()
  # PSNR, SSIM, colourfulness, ab error, AuC of the averaged and raw generator and the gray
  # baseline: <workdir>/eval/step_*.json and TensorBoard eval/*.
  c.evals.metrics = ml_collections.ConfigDict({"type": "colorization", "every": 0})
  # Labelled grids (gray | averaged G | raw G | truth) of num_samples eval images:
  # <workdir>/samples/step_*.png and TensorBoard.
  c.evals.samples = ml_collections.ConfigDict({"type": "samples", "every": 0, "num_samples": 8})
  # FID with an Inception weights file you supply (docs/evaluation.md, FID); skipped while
  # weights="".
  c.evals.fid = ml_collections.ConfigDict({"type": "fid", "every": 0, "weights": ""})
  return c


VARIANTS = ("", "cifar", "quick", "tiny")


def with_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """`config` changed as `variant` (one of `VARIANTS`) says; a config file's last step."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown config variant {variant!r}; valid: "
                     f"{', '.join(repr(v) for v in VARIANTS)} (e.g. configs/lsgan.py:cifar)")
  if variant == "cifar":
    _cifar(config)
  elif variant == "quick":
    _quick(config)
  elif variant == "tiny":
    _tiny(config)
  return config


def _run_length(c: ml_collections.ConfigDict, steps: int, log: int, checkpoint: int,
                evaluate: int) -> None:
  """Steps and the cadences that go with them: every evaluator (samples included) runs every
  `evaluate` steps, unless its `every` says otherwise."""
  c.num_train_steps = steps
  c.log_every_steps = log
  c.checkpoint_every_steps = checkpoint
  c.eval_every_steps = c.sample_every_steps = evaluate


def _cifar(c: ml_collections.ConfigDict) -> None:
  """CIFAR-10 at 32 px: 1000 steps of batch 64 (1.3 epochs), eval every 250 steps on 512 test
  images spread over the classes, so TensorBoard shows learning curves."""
  c.data.name = "cifar10"
  c.data.image_size = 32
  # Flips only: 1.3 epochs of 50,000 photos do not overfit, and resized crops of a 32 px image
  # are blurrier than any test image.
  c.data.min_crop_scale = 1.0
  c.batch_size = 64
  _run_length(c, steps=1000, log=50, checkpoint=500, evaluate=250)
  c.eval.batch_size = 64
  c.eval.num_images = 512
  c.evals.samples.num_samples = 10
  if c.model.generator == "unet":
    c.model.generator_kwargs.num_downs = 5  # One level per halving, down to 1x1.


def _quick(c: ml_collections.ConfigDict) -> None:
  """The default data and networks at 32 px for 300 steps, evaluated once at the end."""
  c.data.image_size = 32
  _run_length(c, steps=300, log=50, checkpoint=300, evaluate=300)
  c.max_checkpoints_to_keep = 1
  if c.model.generator == "unet":
    # Half pix2pix's widths (a quarter of the multiply-adds): six photos need no more.
    c.model.generator_kwargs.update({"num_downs": 5, "features": 32, "max_features": 256})


def _tiny(c: ml_collections.ConfigDict) -> None:
  """16 px, 8 images, 2 steps and the smallest networks: a whole run in seconds on CPU."""
  c.batch_size = 8
  _run_length(c, steps=2, log=1, checkpoint=2, evaluate=2)
  c.data.image_size = 16
  c.eval.batch_size = 8
  c.eval.num_images = 6
  c.evals.samples.num_samples = 4
  if c.model.generator == "unet":
    c.model.generator_kwargs.update({"num_downs": 3, "features": 8, "max_features": 16})
  elif "width" in c.model.generator_kwargs:
    c.model.generator_kwargs.width = 8
  if c.model.discriminator == "patchgan":
    c.model.discriminator_kwargs.update({"features": 8, "num_layers": 2})
  elif "width" in c.model.discriminator_kwargs:
    c.model.discriminator_kwargs.width = 8


def get_unet_regression_config() -> ml_collections.ConfigDict:
  """The pix2pix U-Net alone, no discriminator: shared by configs/regression_l*.py."""
  c = get_base_config()
  c.model.discriminator = "none"
  c.loss.gan = "none"
  # Without a discriminator the U-Net needs no noise: pix2pix's decoder dropout is its GAN's
  # noise source (Isola et al. 2017). With dropout off and Adam 1e-3 (beta1 0.9) instead of the
  # GAN's 2e-4 (0.5), L1 on the CIFAR-10 recipe reached 25.43 dB instead of 25.34 after 1000
  # steps (gray: 24.41; docs/quality.md).
  c.model.generator_kwargs.dropout = 0.0
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  return c


def get_zhang_cic_config() -> ml_collections.ConfigDict:
  """The Zhang et al. CNN without a discriminator: shared by configs/colorful*.py."""
  c = get_base_config()
  c.model.generator = "zhang_cic"
  c.model.generator_kwargs = ml_collections.ConfigDict({"width": 32})
  c.model.discriminator = "none"
  c.loss.gan = "none"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.schedule = "cosine"
  return c
