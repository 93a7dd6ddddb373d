"""The grain input pipeline on real photos: prepared TFDS datasets and folders, end to end.

Every dataset here is written in the test from scikit-image's photos: a nested folder of crops,
and the TFDS ArrayRecord dataset `colorjax.prepare` makes of it. Tests that need to know which
file a pipeline output came from use square crops already at the model's size with
`min_crop_scale=1` and no flip: the random resized crop is then the identity, so every output
image equals exactly one decoded file.
"""

import json
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
from colorjax.data import images
from colorjax.data import pipeline, prepare, sources
from conftest import CIFAR10_DIR, tiny_config

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
  """The TFDS dataset `test_photos` of `photo_root`, stored unresized (max_side > every crop)."""
  pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")
  data_dir = tmp_path_factory.mktemp("tfds")
  summary = prepare.prepare(photo_root, "test_photos", data_dir, max_side=512,
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
@pytest.mark.parametrize("num_workers", [0, 2])
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
  expected = np.stack([pipeline.center_crop(source[stride * i]["image"], SIZE)
                       for i in range(11)])
  np.testing.assert_array_equal(np.concatenate(batches), expected)
  # Twice the same: no randomness in evaluation.
  np.testing.assert_array_equal(np.concatenate(_images(dataset)), expected)
