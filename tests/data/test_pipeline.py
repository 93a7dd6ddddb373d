"""The grain input pipeline on real photos: prepared TFDS datasets and folders, end to end.

Every dataset here is written in the test from scikit-image's photos: a nested folder of crops,
and the TFDS ArrayRecord dataset `colorjax.prepare` makes of it. Tests that need to know which
file a pipeline output came from use square crops already at the model's size with
`min_crop_scale=1` and no flip: the random resized crop is then the identity, so every output
image equals exactly one decoded file.
"""

import io
import json
import math
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage import data

from colorjax import train
from colorjax.core import checkpointing
from colorjax.core import summaries
from colorjax.data import images
from colorjax.data import jpeg
from colorjax.data import pipeline, prepare, sources
from tests.helpers import CIFAR10_DIR, tiny_config

SIZE = 16  # tiny_config's image size.
VALIDATION_PERCENT = 30
NUM_SQUARES = 12


def _photos() -> dict[str, np.ndarray]:
  left, _, _ = data.stereo_motorcycle()
  return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
          "rocket": data.rocket(), "motorcycle": left, "ihc": data.immunohistochemistry()}


def _save(path: pathlib.Path, rgb: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.ascontiguousarray(rgb)).save(path)


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory) -> pathlib.Path:
  """24 crops (4 per photo, 40-150 px, JPEG and PNG) in nested folders."""
  root = tmp_path_factory.mktemp("photos")
  for name, rgb in _photos().items():
    height, width, _ = rgb.shape
    for i in range(4):
      top, left = i * height // 6, i * width // 7
      crop = rgb[top:top + 40 + 35 * i, left:left + 150 - 25 * i]
      ext = "png" if i % 2 else "jpg"
      _save(root / name / ("far" if i > 1 else "near") / f"{name}_{i}.{ext}", crop)
  return root


@pytest.fixture(scope="module")
def prepared(photo_root, tmp_path_factory) -> tuple[pathlib.Path, dict]:
  """The TFDS dataset `test_photos` of `photo_root`, stored unresized (max_side > every crop)
  and lossless (PNG), so that its batches equal the folder's pixel for pixel."""
  pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")
  data_dir = tmp_path_factory.mktemp("tfds")
  summary = prepare.prepare(photo_root, "test_photos", data_dir, max_side=512, image_format="png",
                            validation_percent=VALIDATION_PERCENT, workers=1, progress=False)
  assert summary["written"]["train"] > 0 and summary["written"]["validation"] > 0
  return data_dir, summary


@pytest.fixture(scope="module")
def square_root(tmp_path_factory) -> pathlib.Path:
  """NUM_SQUARES distinct SIZE x SIZE photo crops as PNG, so outputs can be told apart."""
  root = tmp_path_factory.mktemp("squares")
  photos = list(_photos().values())
  for k in range(NUM_SQUARES):
    rgb = photos[k % len(photos)]
    top, left = 60 + 23 * k, 80 + 17 * k
    small = Image.fromarray(rgb[top:top + 96, left:left + 96]).resize((SIZE, SIZE), Image.LANCZOS)
    _save(root / f"group{k % 3}" / f"square_{k:02d}.png", np.asarray(small))
  return root


def _config(name: str, data_dir: str = "", **data_overrides):
  config = tiny_config("lsgan")
  with config.unlocked():
    config.data.name = name
    config.data.data_dir = data_dir
    for key, value in data_overrides.items():
      config.data[key] = value
  return config


def _identity_crops(config):
  """Makes the train transform the identity on SIZE x SIZE images (see the module docstring)."""
  with config.unlocked():
    config.data.min_crop_scale = 1.0
    config.data.random_flip = False
    config.data.validation_percent = 0.0
  return config


def _file_ids(root: pathlib.Path) -> dict[bytes, str]:
  """{decoded pixels: relative path} for the usable (colour, readable) images under `root`."""
  ids = {}
  for path in images.list_images(root):
    try:
      decoded = images.read_image(path)
    except images.ImageError:
      continue
    if not decoded.is_grayscale:
      ids[decoded.rgb.tobytes()] = images.relative_key(path, root)
  return ids


def _identify(batches: list[np.ndarray], ids: dict[bytes, str]) -> list[str]:
  """The file each output image is; fails on an image that is not exactly one of them."""
  found = []
  for image in np.concatenate(batches):
    key = image.tobytes()
    assert key in ids, "a pipeline output is not (exactly) any usable file"
    found.append(ids[key])
  return found


def _take(dataset, n: int) -> list[np.ndarray]:
  """The images of the first n batches."""
  it = iter(dataset)
  return [next(it)["image"] for _ in range(n)]


def _images(dataset) -> list[np.ndarray]:
  """The images of every batch."""
  return [batch["image"] for batch in dataset]


def _as_set(batches: list[np.ndarray]) -> list[bytes]:
  return sorted(image.tobytes() for image in np.concatenate(batches))


# ------------------------------------------------------------------------------------------
# Sources: prepared TFDS datasets and folders.
# ------------------------------------------------------------------------------------------
@pytest.mark.slow  # Trains (~28 s).
def test_prepared_dataset_feeds_batches_and_training(prepared, tmp_path):
  data_dir, summary = prepared
  config = _config("test_photos", str(data_dir))
  batches = _take(pipeline.create_train_dataset(config), 4)  # > 1 epoch of the train split.
  for batch in batches:
    assert batch.dtype == np.uint8 and batch.shape == (8, SIZE, SIZE, 3)
  assert len(set(_as_set(batches))) > 8  # Distinct augmented crops, not one image repeated.

  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == config.num_train_steps
  record = json.load(open(tmp_path / "eval" / "latest.json"))
  assert record["dataset"] == "test_photos"
  assert record["num_images"] == min(config.eval.num_images, summary["written"]["validation"])
  assert np.isfinite(record["model"]["psnr"])


def test_folder_source_splits_like_prepare(photo_root, prepared):
  data_dir, _ = prepared
  for train_split, split in ((True, "train"), (False, "validation")):
    folder = sources.create_source(_config(str(photo_root), validation_percent=VALIDATION_PERCENT
                                           ).data, train=train_split)
    tfds_source = sources.create_source(_config("test_photos", str(data_dir)).data,
                                        train=train_split)
    folder_paths = sorted(images.relative_key(folder[i]["image"], photo_root)
                          for i in range(len(folder)))
    tfds_paths = sorted(tfds_source[i]["path"].decode() for i in range(len(tfds_source)))
    assert folder_paths == tfds_paths, split
  # And through the pipeline: the same center crops from either source (prepare stored the
  # photos unresized, losslessly).
  folder_config = _config(str(photo_root), validation_percent=VALIDATION_PERCENT)
  tfds_config = _config("test_photos", str(data_dir))
  for config in (folder_config, tfds_config):
    with config.unlocked():
      config.eval.num_images = -1
  folder_eval, n_folder = pipeline.create_eval_dataset(folder_config)
  tfds_eval, n_tfds = pipeline.create_eval_dataset(tfds_config)
  assert n_folder == n_tfds > 0
  assert _as_set(_images(folder_eval)) == _as_set(_images(tfds_eval))


def test_folder_source_on_cifar10():
  folder = os.path.join(CIFAR10_DIR, "test")
  if not os.path.isdir(folder):
    pytest.skip(f"CIFAR-10 JPEGs not found at {folder}")
  config = _config(folder)
  batch = next(iter(pipeline.create_train_dataset(config)))["image"]
  assert batch.dtype == np.uint8 and batch.shape == (8, SIZE, SIZE, 3)
  assert batch.std() > 10  # Photos, not blank images.


def test_folder_with_train_and_test_subfolders_is_split_by_them(square_root, tmp_path,
                                                               monkeypatch):
  for split in ("train", "test"):
    for group in ("group0", "group1"):
      (tmp_path / "photos" / split / group).mkdir(parents=True)
  squares = sorted(square_root.rglob("*.png"))
  for k, path in enumerate(squares):
    split = "test" if k % 3 == 0 else "train"  # Both groups in both splits.
    target = tmp_path / "photos" / split / f"group{k % 2}" / path.name
    target.write_bytes(path.read_bytes())
  monkeypatch.setenv("HOME", str(tmp_path))
  config = _config("~/photos")  # Expanded as a shell would.
  train_source = sources.create_source(config.data, train=True)
  eval_source = sources.create_source(config.data, train=False)
  names = lambda s: {os.path.basename(s[i]["image"]) for i in range(len(s))}
  assert names(eval_source) == {p.name for k, p in enumerate(squares) if k % 3 == 0}
  assert names(train_source) == {p.name for k, p in enumerate(squares) if k % 3}
  assert train_source.classes == eval_source.classes == ["group0", "group1"]


# ------------------------------------------------------------------------------------------
# Determinism and sharding.
# ------------------------------------------------------------------------------------------
def test_same_seed_same_batches_other_seed_other_batches(square_root):
  config = _config(str(square_root), validation_percent=0.0)
  first = _take(pipeline.create_train_dataset(config), 3)
  again = _take(pipeline.create_train_dataset(config), 3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  with config.unlocked():
    config.seed = 1
  other = _take(pipeline.create_train_dataset(config), 3)
  assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def _as_process(monkeypatch, index: int, count: int) -> None:
  monkeypatch.setattr(jax, "process_index", lambda: index)
  monkeypatch.setattr(jax, "process_count", lambda: count)


def test_two_processes_read_disjoint_shards_that_cover_the_split(square_root, monkeypatch):
  config = _identity_crops(_config(str(square_root)))
  with config.unlocked():
    config.eval.num_images = -1
    config.data.eval_split = "train"  # Every square, so eval sharding covers the same files.
  ids = _file_ids(square_root)
  assert len(ids) == NUM_SQUARES
  shard_size = NUM_SQUARES // 2
  train_shards, eval_shards = [], []
  for index in range(2):
    _as_process(monkeypatch, index, 2)
    assert pipeline.local_batch_size(config.batch_size) == 4
    # Two batches of 4: one epoch of this process's 6 files, then the next epoch starts.
    seen = _identify(_take(pipeline.create_train_dataset(config), 2), ids)
    epoch = set(seen[:shard_size])
    assert len(epoch) == shard_size  # Each of its files exactly once per epoch.
    assert set(seen[shard_size:]) <= epoch  # The next epoch reads the same shard.
    train_shards.append(epoch)
    eval_batches, _ = pipeline.create_eval_dataset(config)
    eval_shards.append(_identify(_images(eval_batches), ids))
  assert not train_shards[0] & train_shards[1]
  assert train_shards[0] | train_shards[1] == set(ids.values())
  assert all(len(shard) == shard_size for shard in eval_shards)
  assert sorted(eval_shards[0] + eval_shards[1]) == sorted(ids.values())


# ------------------------------------------------------------------------------------------
# Checkpointing the iterator.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: ~7 s.
def test_restored_iterator_continues_with_the_next_batch(prepared, tmp_path, num_workers):
  data_dir, _ = prepared
  config = _config("test_photos", str(data_dir), num_workers=num_workers)
  state = {"w": jnp.arange(4.0)}
  manager = checkpointing.make_manager(str(tmp_path), max_to_keep=2)
  it = iter(pipeline.create_train_dataset(config))
  consumed = [next(it)["image"] for _ in range(3)]
  checkpointing.save(manager, 3, state, it)
  manager.wait_until_finished()
  expected = [next(it)["image"] for _ in range(3)]

  fresh = iter(pipeline.create_train_dataset(config))
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  restored = checkpointing.restore(manager, 3, abstract, fresh)
  manager.close()
  np.testing.assert_array_equal(restored["w"], state["w"])
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["image"], want)
  # Not trivially true: an unrestored iterator starts elsewhere.
  assert not np.array_equal(consumed[0], expected[0])


# ------------------------------------------------------------------------------------------
# Bad files.
# ------------------------------------------------------------------------------------------
def test_corrupt_and_grayscale_files_are_skipped(square_root, tmp_path):
  root = tmp_path / "mixed"
  for path in images.list_images(square_root):
    target = root / images.relative_key(path, square_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pathlib.Path(path).read_bytes())
  good = pathlib.Path(images.list_images(square_root)[0]).read_bytes()
  (root / "bad").mkdir()
  (root / "bad/truncated.png").write_bytes(good[:len(good) // 2])
  (root / "bad/empty.jpg").write_bytes(b"")
  (root / "bad/notes.jpg").write_text("not a photo\n" * 20)
  camera = Image.fromarray(data.camera()).resize((SIZE, SIZE))
  camera.save(root / "bad/gray_l.png")
  camera.convert("RGB").save(root / "bad/gray_rgb.jpg")
  ids = _file_ids(root)
  assert len(ids) == NUM_SQUARES  # The bad files are not usable images.

  config = _identity_crops(_config(str(root)))
  seen = _identify(_take(pipeline.create_train_dataset(config), 6), ids)  # 4 epochs.
  assert set(seen) == set(ids.values())
  with config.unlocked():
    config.data.eval_split = "train"
    config.eval.num_images = -1
  eval_batches, num_listed = pipeline.create_eval_dataset(config)
  assert num_listed == NUM_SQUARES + 5
  assert sorted(_identify(_images(eval_batches), ids)) == sorted(ids.values())


# ------------------------------------------------------------------------------------------
# Evaluation data.
# ------------------------------------------------------------------------------------------
def test_eval_dataset_center_crops_num_images_and_partial_batch(prepared):
  data_dir, summary = prepared
  assert summary["written"]["train"] >= 11
  config = _config("test_photos", str(data_dir), eval_split="train")
  with config.unlocked():
    config.eval.num_images = 11
  dataset, num_images = pipeline.create_eval_dataset(config)
  batches = _images(dataset)
  assert num_images == 11
  assert [b.shape for b in batches] == [(8, SIZE, SIZE, 3), (3, SIZE, SIZE, 3)]
  source = sources.create_source(config.data, train=False)
  stride = len(source) // 11  # Evenly spaced over the split, not its first 11 (one class).
  expected = np.stack([pipeline.center_crop(images.read_image(source[stride * i]["image"]).rgb,
                                            SIZE) for i in range(11)])
  np.testing.assert_array_equal(np.concatenate(batches), expected)
  # Twice the same: no randomness in evaluation.
  np.testing.assert_array_equal(np.concatenate(_images(dataset)), expected)


# ------------------------------------------------------------------------------------------
# The JPEG train path against the path it replaced (issue 24).
# ------------------------------------------------------------------------------------------
def _previous_train_crop(path: str, size: int, rng: np.random.Generator,
                         min_scale: float = 0.35) -> np.ndarray | None:
  """The train transform before issue 24, kept here only to compare with: a PIL decode at the
  DCT scale the smallest crop allows, a full-resolution grayscale test, the crop drawn on the
  decoded image, PIL's bilinear resize, a numpy flip."""
  decoded = images.read_image(path, min_decode_side=math.ceil(size / math.sqrt(min_scale * 0.75)))
  if decoded.mode in ("L", "LA") or images.channels_nearly_equal(decoded.rgb, sample_side=512):
    return None
  rgb = decoded.rgb
  height, width = rgb.shape[:2]
  for _ in range(10):
    area = height * width * rng.uniform(min_scale, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w, crop_h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      break
  else:
    crop_h = crop_w = min(height, width)
  top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
  crop = Image.fromarray(rgb[top:top + crop_h, left:left + crop_w])
  out = np.asarray(crop.resize((size, size), Image.BILINEAR, reducing_gap=None))
  if rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


@pytest.fixture(scope="module")
def imagenet_sized(tmp_path_factory) -> list[str]:
  """16 JPEGs (quality 90) of ImageNet's size: shorter side 333-375 px, crops of the photos."""
  root = tmp_path_factory.mktemp("imagenet_sized")
  rng, paths = np.random.default_rng(0), []
  for k in range(16):
    photo = list(_photos().values())[k % 6]
    height, width = photo.shape[:2]
    crop_h, crop_w = int(height * rng.uniform(0.6, 1)), int(width * rng.uniform(0.6, 1))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    scale = rng.uniform(333, 375) / min(crop_h, crop_w)
    crop = Image.fromarray(photo[top:top + crop_h, left:left + crop_w])
    crop = crop.resize((round(crop_w * scale), round(crop_h * scale)), Image.BICUBIC)
    paths.append(str(root / f"photo_{k:02d}.jpg"))
    crop.save(paths[-1], quality=90)
  return paths


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


@pytest.mark.parametrize("size", [128, 256])
def test_jpeg_train_crops_match_the_previous_path(imagenet_sized, size):
  """Same seeds, same crops and colours: at these sizes the previous path decoded at full
  scale, so both draw the same crop from the same image size. At 128 px the new path decodes
  most crops at 1/2 scale (libjpeg's DCT scaling), at 256 px at full scale."""
  transform = pipeline.TrainTransform(size, 0.35, flip=True)
  before, after = [], []
  for repeat in range(4):
    for k, path in enumerate(imagenet_sized):
      seed = 100 * repeat + k
      before.append(_previous_train_crop(path, size, np.random.default_rng(seed)))
      after.append(transform.random_map({"image": path}, np.random.default_rng(seed))["image"])
  before, after = np.stack(before), np.stack(after)
  psnrs = [_psnr(b, a) for b, a in zip(before, after)]
  others = [_psnr(b, a) for b, a in zip(before, np.roll(after, 1, axis=0))]
  # The same crop, position and flip (measured: median 33 dB at 128 px, 46 at 256; the 10th
  # percentile 29 and 40), where another crop of the same photos gives 13 dB.
  assert np.percentile(psnrs, 10) > 26 and np.median(psnrs) > 30, psnrs
  assert np.median(others) < 20
  # The colours the model sees: per-channel mean and spread within a level (measured: 0.14
  # and 0.44 at most), and the image detail (mean absolute horizontal difference) within 15%
  # (measured +7% at 256 px, +10% at 128: OpenCV's bilinear does not widen its kernel when
  # shrinking by less than 2x as PIL's does, so the crops are slightly sharper).
  np.testing.assert_allclose(after.mean(axis=(0, 1, 2)), before.mean(axis=(0, 1, 2)), atol=0.5)
  np.testing.assert_allclose(after.std(axis=(0, 1, 2)), before.std(axis=(0, 1, 2)), atol=1.0)
  detail = lambda x: np.abs(np.diff(x.astype(np.float32), axis=2)).mean()
  assert 1.0 <= detail(after) / detail(before) < 1.15


def test_jpeg_decode_scale_follows_the_crop(imagenet_sized):
  assert [pipeline.jpeg_reduction(side, 64) for side in (63, 64, 127, 128, 256, 511, 512, 4096)
          ] == [1, 1, 1, 2, 4, 4, 8, 8]
  data_bytes = pathlib.Path(imagenet_sized[0]).read_bytes()
  header = jpeg.read_jpeg_header(data_bytes)
  full = images.read_image(data_bytes).rgb
  assert (header.height, header.width) == full.shape[:2]
  for reduction in (1, 2, 4, 8):
    view = jpeg.decode_jpeg_reduced(data_bytes, header, reduction)
    # libjpeg's scaled size, and PIL's draft decode of the same scale, pixel for pixel.
    assert view.shape[:2] == (math.ceil(full.shape[0] / reduction),
                              math.ceil(full.shape[1] / reduction))
    pil = Image.open(io.BytesIO(data_bytes))
    pil.draft("RGB", (full.shape[1] // reduction, full.shape[0] // reduction))
    np.testing.assert_array_equal(view, np.asarray(pil))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_fast_path_applies_exif_orientation(orientation):
  stored = Image.fromarray(data.chelsea()[:200, :300])
  exif = Image.Exif()
  exif[0x0112] = orientation
  buffer = io.BytesIO()
  stored.save(buffer, "JPEG", quality=95, exif=exif)
  data_bytes = buffer.getvalue()
  header = jpeg.read_jpeg_header(data_bytes)
  upright = images.read_image(data_bytes).rgb  # PIL's exif_transpose.
  assert (header.height, header.width) == upright.shape[:2]
  np.testing.assert_array_equal(jpeg.decode_jpeg_reduced(data_bytes, header, 1), upright)


def test_odd_jpegs_take_the_general_reader(tmp_path):
  """A truncated JPEG (no end marker: PIL refuses it), a gray one and a CMYK one have
  no fast-path header; the train transform skips the first two and crops the third."""
  buffer = io.BytesIO()
  Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
  good = buffer.getvalue()
  (tmp_path / "truncated.jpg").write_bytes(good[:len(good) * 2 // 3])
  Image.fromarray(data.camera()).save(tmp_path / "gray.jpg")
  Image.fromarray(data.chelsea()).convert("CMYK").save(tmp_path / "cmyk.jpg")
  transform = pipeline.TrainTransform(32, 0.35, flip=True)
  for name, usable in (("truncated", False), ("gray", False), ("cmyk", True)):
    path = str(tmp_path / f"{name}.jpg")
    assert jpeg.read_jpeg_header(pathlib.Path(path).read_bytes()) is None, name
    out = transform.random_map({"image": path}, np.random.default_rng(0))
    assert (out is not None) == usable, name
  assert out["image"].shape == (32, 32, 3) and out["image"].std() > 10


@pytest.mark.slow  # Trains twice on large PNGs (~95 s).
def test_input_wait_share_tells_slow_input_from_a_slow_step(tmp_path):
  """The trainer's `input_wait_share` (TensorBoard; the console line shows it too): near 1 when
  every batch waits for decoding (large PNGs: zlib, no DCT scaling), low when batches come
  from memory."""
  slow = tmp_path / "large_pngs"
  slow.mkdir()
  big = Image.fromarray(data.astronaut()).resize((2400, 2400), Image.BICUBIC)
  for k in range(4):
    big.rotate(90 * k).save(slow / f"big_{k}.png", compress_level=1)
  shares = {}
  for label, name in (("slow", str(slow)), ("fast", "skimage_photos")):
    config = _config(name, validation_percent=0.0)
    with config.unlocked():
      config.data.eval_split = "train"
      config.num_train_steps, config.log_every_steps = 6, 3
    workdir = tmp_path / label
    train.train_and_evaluate(config, str(workdir))
    values = summaries.read_scalars(str(workdir))["input_wait_share"]
    shares[label] = values[6]  # The second window: compilation is behind it.
  # Relative, as a timing on a shared machine must be: 0.55 / 0.04 under the full suite's load,
  # about 0.9 / 0.05 on an idle machine.
  assert shares["slow"] > 0.4 and shares["fast"] < shares["slow"] / 3, shares
