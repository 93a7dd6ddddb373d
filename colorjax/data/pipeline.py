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
import cv2
import grain
import jax
import numpy as np
from PIL import Image

from colorjax.core import distributed
from colorjax.data import images
from colorjax.data import jpeg
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
      logging.warning("skipping %s: %s", _name(image), e)
      return None
    if decoded.is_grayscale:  # A gray photo teaches the model gray; skip it, as prepare does.
      return None
    return images.composite_on_white(decoded.rgb, decoded.alpha)
  image = np.asarray(image)
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
  return image[..., :3].astype(np.uint8)


def _name(image: str | bytes) -> str:
  return image if isinstance(image, str) else f"a record of {len(image)} bytes"


def sample_crop(height: int, width: int, rng: np.random.Generator,
                min_scale: float) -> tuple[int, int, int, int]:
  """(top, left, crop height, crop width) of an Inception-style random crop (Szegedy et al.
  2015): area fraction in [min_scale, 1], aspect ratio in [3/4, 4/3], log-uniform."""
  for _ in range(10):
    area = height * width * rng.uniform(min_scale, 1.0)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))  # math: floats, no arrays.
    crop_w = round(math.sqrt(area * aspect))
    crop_h = round(math.sqrt(area / aspect))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      break
  else:  # Extreme aspect ratios: fall back to the largest centred square.
    crop_h = crop_w = min(height, width)
  top = int(rng.integers(0, height - crop_h + 1))
  left = int(rng.integers(0, width - crop_w + 1))
  return top, left, crop_h, crop_w


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
  """`rgb` (any strides) resized to size x size: bilinear down to 2x shrinking (what the JPEG
  path's DCT scaling leaves), area averaging beyond, where bilinear would alias."""
  if rgb.strides[-1] != 1 or rgb.strides[-2] != rgb.shape[-1]:
    rgb = np.ascontiguousarray(rgb)  # Rotated EXIF views: OpenCV needs packed pixels.
  shrink = min(rgb.shape[0], rgb.shape[1]) / size
  interpolation = cv2.INTER_AREA if shrink > 2 else cv2.INTER_LINEAR
  return cv2.resize(rgb, (size, size), interpolation=interpolation)


def _maybe_flip(out: np.ndarray, rng: np.random.Generator, flip: bool) -> np.ndarray:
  """A horizontal flip with probability 1/2 (OpenCV's: numpy's copy of a reversed view of
  3-byte pixels costs more than the resize)."""
  if flip and rng.random() < 0.5:
    return cv2.flip(out, 1)
  return np.ascontiguousarray(out)


def random_resized_crop(rgb: np.ndarray, size: int, rng: np.random.Generator,
                        min_scale: float, flip: bool) -> np.ndarray:
  """Inception-style crop (`sample_crop`) of a decoded image, resized to size x size."""
  top, left, crop_h, crop_w = sample_crop(rgb.shape[0], rgb.shape[1], rng, min_scale)
  out = resize_square(rgb[top:top + crop_h, left:left + crop_w], size)
  return _maybe_flip(out, rng, flip)


def jpeg_reduction(crop_side: int, size: int) -> int:
  """The largest libjpeg DCT scale 1/k (k in 1, 2, 4, 8) that keeps a crop's shorter side
  `crop_side` at least `size` pixels: the resolution the output needs and no more."""
  for reduction in (8, 4, 2):
    if crop_side >= size * reduction:
      return reduction
  return 1


def random_resized_crop_jpeg(data: bytes, header: jpeg.JpegHeader, size: int,
                             rng: np.random.Generator, min_scale: float,
                             flip: bool) -> np.ndarray | None:
  """`random_resized_crop` of a colour JPEG, or None for a grayscale photo.

  The crop is drawn from the header's size before decoding, so that libjpeg decodes at the
  smallest DCT scale the crop allows (`jpeg_reduction`); the grayscale test reads a strided
  sample of the decoded image and nothing else reads pixels outside the crop.
  """
  top, left, crop_h, crop_w = sample_crop(header.height, header.width, rng, min_scale)
  view = jpeg.decode_jpeg_reduced(data, header, jpeg_reduction(min(crop_h, crop_w), size))
  if images.channels_nearly_equal(view):  # A gray photo teaches the model gray; skip it.
    return None
  scale_y, scale_x = view.shape[0] / header.height, view.shape[1] / header.width
  top_r, left_r = round(top * scale_y), round(left * scale_x)
  bottom_r = max(top_r + 1, round((top + crop_h) * scale_y))
  right_r = max(left_r + 1, round((left + crop_w) * scale_x))
  out = resize_square(view[top_r:bottom_r, left_r:right_r], size)
  return _maybe_flip(out, rng, flip)


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
  """Resize the shorter side to `size`, then take the central size x size square."""
  height, width = rgb.shape[:2]
  scale = size / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return np.ascontiguousarray(resized[top:top + size, left:left + size])


def _read_bytes(image: str | bytes) -> bytes | None:
  if isinstance(image, bytes):
    return image
  try:
    with open(image, "rb") as f:
      return f.read()
  except OSError as e:
    logging.warning("skipping %s: unreadable: %s", image, e.strerror or e)
    return None


class TrainTransform(grain.transforms.RandomMap):
  """Decode, random resized crop and flip; None for records that cannot be used."""

  def __init__(self, size: int, min_scale: float, flip: bool, with_label: bool = False):
    self.size, self.min_scale, self.flip = size, min_scale, flip
    self.with_label = with_label

  def random_map(self, record: dict[str, Any],
                 rng: np.random.Generator) -> dict[str, Any] | None:
    image = self._crop(record["image"], rng)
    if image is None:
      return None
    example = {"image": image}
    if self.with_label:
      example["label"] = np.int32(record["label"])
    return example

  def _crop(self, image: Any, rng: np.random.Generator) -> np.ndarray | None:
    if isinstance(image, (str, bytes)):
      data = _read_bytes(image)
      if data is None:
        return None
      try:
        header = jpeg.read_jpeg_header(data)
        if header is not None:  # The common case: a complete colour JPEG.
          return random_resized_crop_jpeg(data, header, self.size, rng, self.min_scale,
                                          self.flip)
      except images.ImageError as e:
        logging.warning("skipping %s: %s", _name(image), e)
        return None
      image = data
    # Other formats and odd JPEGs (CMYK, gray, truncated): the general reader. The smallest
    # crop (area min_scale, aspect 4/3) should still hold `size` pixels a side.
    rgb = _to_rgb({"image": image}, math.ceil(self.size / math.sqrt(self.min_scale * 0.75)))
    if rgb is None:
      return None
    return random_resized_crop(rgb, self.size, rng, self.min_scale, self.flip)


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


def local_batch_size(global_batch_size: int, name: str = "batch_size") -> int:
  """The part of the global batch (config key `name`) this process feeds."""
  distributed.check_batch_divides(name, global_batch_size)
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
  local_size = local_batch_size(config.eval.batch_size, "eval.batch_size")
  return _finish(ds, local_size, data, drop_remainder=False), num_images


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
