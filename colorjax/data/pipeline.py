"""The grain input pipeline: records -> decoded, augmented uint8 RGB batches on the mesh.

Everything here runs on CPU workers; Lab conversion and everything after it happens on the
accelerator inside the jitted step. Each process reads its own shard of the source and yields
its part of the global batch; `to_global_batch` assembles the global arrays on the mesh.

A batch is a dict: "image", uint8 RGB (B, S, S, 3), and, for configs that train on image-level
classes (`uses_labels`), "label", int32 (B,).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from absl import flags
import grain
import jax
import numpy as np
from PIL import Image

from colorjax.data import images
from colorjax.data import sources


def _to_rgb(record: dict[str, Any], min_decode_side: int) -> np.ndarray | None:
  """A record's image as uint8 (H, W, 3), or None (logged) when the file cannot be used.

  Files are decoded at reduced scale where the shorter side stays >= `min_decode_side`.
  """
  image = record["image"]
  if isinstance(image, (str, bytes)):
    try:
      decoded = images.read_image(image, min_decode_side=min_decode_side)
    except images.ImageError as e:
      logging.warning("skipping %s: %s", image, e)
      return None
    if decoded.is_grayscale:  # A gray photo teaches the model gray; skip it, as prepare does.
      return None
    return images.composite_on_white(decoded.rgb, decoded.alpha)
  image = np.asarray(image)
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
  return image[..., :3].astype(np.uint8)


def random_resized_crop(rgb: np.ndarray, size: int, rng: np.random.Generator,
                        min_scale: float, flip: bool) -> np.ndarray:
  """Inception-style crop: area fraction in [min_scale, 1], aspect ratio in [3/4, 4/3]."""
  height, width = rgb.shape[:2]
  for _ in range(10):
    area = height * width * rng.uniform(min_scale, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w = int(round(np.sqrt(area * aspect)))
    crop_h = int(round(np.sqrt(area / aspect)))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      break
  else:  # Extreme aspect ratios: fall back to the largest centred square.
    crop_h = crop_w = min(height, width)
  top = rng.integers(0, height - crop_h + 1)
  left = rng.integers(0, width - crop_w + 1)
  crop = Image.fromarray(rgb[top:top + crop_h, left:left + crop_w])
  out = np.asarray(crop.resize((size, size), Image.BILINEAR, reducing_gap=None))
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
  """Resize the shorter side to `size`, then take the central size x size square."""
  height, width = rgb.shape[:2]
  scale = size / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return np.ascontiguousarray(resized[top:top + size, left:left + size])


class TrainTransform(grain.transforms.RandomMap):
  """Decode, random resized crop and flip; None for records that cannot be used."""

  def __init__(self, size: int, min_scale: float, flip: bool, with_label: bool = False):
    self.size, self.min_scale, self.flip = size, min_scale, flip
    self.with_label = with_label

  def random_map(self, record: dict[str, Any],
                 rng: np.random.Generator) -> dict[str, Any] | None:
    # The smallest crop (area min_scale, aspect 4/3) should still hold `size` pixels a side.
    rgb = _to_rgb(record, math.ceil(self.size / math.sqrt(self.min_scale * 0.75)))
    if rgb is None:
      return None
    example = {"image": random_resized_crop(rgb, self.size, rng, self.min_scale, self.flip)}
    if self.with_label:
      example["label"] = np.int32(record["label"])
    return example


class EvalTransform(grain.transforms.Map):
  """Decode and centre crop; None for records that cannot be used. Eval reads no labels."""

  def __init__(self, size: int):
    self.size = size

  def map(self, record: dict[str, Any]) -> dict[str, Any] | None:
    rgb = _to_rgb(record, self.size)
    return None if rgb is None else {"image": center_crop(rgb, self.size)}


def uses_labels(config: Any) -> bool:
  """Whether batches carry "label": only the auxiliary classification loss reads it."""
  return config.loss.class_weight > 0


def check_labels(source: Sequence[Any], config: Any) -> None:
  """When `config` trains on labels: a clear error if the data has none or the generator's
  classifier has another size."""
  if not uses_labels(config):
    return
  names = sources.class_names(source)
  if names is None:
    raise ValueError(
        f"loss.class_weight={config.loss.class_weight} needs image-level labels, and dataset "
        f"{config.data.name!r} has none. Use a TFDS dataset with a 'label' feature (cifar10, "
        "cifar100, places365_small, imagenet2012) or a folder with one subfolder per class, "
        "or set --config.loss.class_weight=0.")
  num_classes = config.model.generator_kwargs.get("num_classes", 0)
  if num_classes != len(names):
    raise ValueError(
        f"dataset {config.data.name!r} has {len(names)} classes ({', '.join(names[:5])}"
        f"{', ...' if len(names) > 5 else ''}) but model.generator_kwargs.num_classes="
        f"{num_classes}; set --config.model.generator_kwargs.num_classes={len(names)}")


def local_batch_size(global_batch_size: int) -> int:
  """The part of the global batch this process feeds."""
  if global_batch_size % jax.device_count():
    raise ValueError(f"batch_size={global_batch_size} must be divisible by the number of "
                     f"devices ({jax.device_count()})")
  return global_batch_size // jax.process_count()


def _process_shard(ds: grain.MapDataset) -> grain.MapDataset:
  """Each process reads a disjoint, interleaved slice of the records."""
  return ds[jax.process_index()::jax.process_count()]


def _stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def _finish(ds: grain.MapDataset, batch_size: int, data_config: Any,
            drop_remainder: bool) -> grain.IterDataset:
  ds = ds.filter(lambda x: x is not None)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=data_config.read_threads,
                                            prefetch_buffer_size=2 * batch_size))
  it = it.batch(batch_size, drop_remainder=drop_remainder, batch_fn=_stack)
  if data_config.num_workers > 0:
    _use_default_flags_if_unparsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.num_workers))
  return it


def _use_default_flags_if_unparsed() -> None:
  """Grain's worker processes read grain's absl flags; outside an absl app (tests, notebooks,
  benchmarks) nothing parsed them and the first batch raises UnparsedFlagAccessError."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _process_seed(seed: int) -> int:
  return int(np.random.SeedSequence([seed, jax.process_index()]).generate_state(1)[0])


def create_train_dataset(config: Any) -> grain.IterDataset:
  """An endless, shuffled, augmented stream of this process's batches (B_local rows each)."""
  data = config.data
  source = sources.create_source(data, train=True)
  check_labels(source, config)
  ds = grain.MapDataset.source(source)
  # Each process shuffles and augments its shard with its own seed: the same seed everywhere
  # would give every process the same crops and flips for its i-th record.
  ds = _process_shard(ds).seed(_process_seed(config.seed)).shuffle().repeat()
  ds = ds.random_map(TrainTransform(data.image_size, data.min_crop_scale, data.random_flip,
                                    with_label=uses_labels(config)))
  return _finish(ds, local_batch_size(config.batch_size), data, drop_remainder=True)


def create_eval_dataset(config: Any) -> tuple[grain.IterDataset, int]:
  """One pass over (`eval.num_images` evenly spaced images of) the eval split, and its length.

  Evenly spaced, not the first N: folders list files sorted by path, class by class, so the
  first 256 of CIFAR-10's test folder would all be airplanes.
  """
  data = config.data
  source = sources.create_source(data, train=False)
  ds = grain.MapDataset.source(source)
  if 0 < config.eval.num_images < len(ds):
    stride = len(ds) // config.eval.num_images
    ds = ds[:stride * config.eval.num_images:stride]
  num_images = len(ds)
  ds = _process_shard(ds).map(EvalTransform(data.image_size))
  return _finish(ds, local_batch_size(config.eval.batch_size), data, drop_remainder=False), num_images


def to_global_batch(local_batch: Any, sharding: jax.sharding.Sharding) -> Any:
  """This process's rows (an array or a dict of them) -> global arrays sharded over `data`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                      local_batch)


def pad_batch(batch: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pad a short final eval batch to `batch_size`; the mask marks the real rows."""
  valid = batch.shape[0]
  mask = np.arange(batch_size) < valid
  if valid < batch_size:
    padding = np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)
    batch = np.concatenate([batch, padding])
  return batch, mask
