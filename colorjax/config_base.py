"""The keys every config shares, with the pix2pix colorization defaults.

Config files under configs/ start from `get_base_config()` and change what their method needs;
`--config.<key>=value` overrides any key, and a mistyped key fails because configs are locked.
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
  c.eval_every_steps = 600
  c.sample_every_steps = 200  # Image grids (L | prediction | truth) to TensorBoard and PNG.
  c.max_checkpoints_to_keep = 3
  c.dtype = "float32"  # Computation dtype ("bfloat16" for mixed precision); params stay float32.

  c.data = ml_collections.ConfigDict()
  c.data.name = "skimage_photos"  # Embedded real photos: works offline. See colorjax/data/sources.py.
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
  c.model.generator_kwargs = ml_collections.ConfigDict({"num_downs": 6})
  c.model.discriminator = "patchgan"  # "none" for pure regression/classification.
  c.model.discriminator_kwargs = ml_collections.ConfigDict()
  c.model.ema_decay = 0.999  # Generator EMA used for eval and colorize; 0 turns it off.

  c.loss = ml_collections.ConfigDict()
  c.loss.gan = "lsgan"  # An objective from colorjax/objectives.py, or "none".
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
  c.loss.ebgan_margin = -1.0  # EBGAN margin in normalised MSE units (-1 = seed 000's m=80 on 0-255).
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
  c.color.prior_path = ""  # Class-rebalancing prior (.npz from `python -m colorjax.prior`).
  c.color.num_neighbors = 5  # Soft-encoding: k nearest bins.
  c.color.sigma = 5.0
  c.color.rebalance_lambda = 0.5
  c.color.temperature = 0.38  # Annealed-mean decoding.
  c.color.decode = "regression"  # regression | annealed_mean | mode | mean (colorjax/classification.py).
  c.color.prior_num_images = 2000  # Training images the colour prior is estimated from (-1 = all).

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 16
  c.eval.num_images = 256  # First N images of the eval split (-1 = all).
  c.eval.num_samples = 8  # Rows in the sample grid.
  c.eval.step = -1  # --mode=eval restores this checkpoint step (-1 = latest).
  c.eval.fid_weights = ""  # Inception weights file for FID ("" = skip FID).
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
