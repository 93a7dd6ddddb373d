"""Tests for colorjax.data.prepare (the library of `colorjax.prepare`): a real folder of photos
and broken files -> TFDS. The interrupted command: tests/end_to_end/test_prepare.py."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")
from PIL import Image

from colorjax.data import images
from colorjax.data import jpeg
from colorjax.data import pipeline
from colorjax.data import prepare
from colorjax.data import prepare_chunks
from colorjax.data import sources
from colorjax.data import splits
from tests.helpers import REPO_ROOT
from tests.helpers.classes import CROPS_PER_CLASS, PHOTOS, labelled_config
from tests.helpers.photo_folder import MAX_SIDE, VALIDATION_PERCENT, read_split

tf.config.set_visible_devices([], "GPU")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def test_summary_counts(photo_folder, prepared_photo_folder):
  root, good, skipped = photo_folder
  data_dir, summary = prepared_photo_folder
  expected_splits = {s: sum(splits.hash_split(rel, VALIDATION_PERCENT) == s for rel in good)
                     for s in ("train", "validation")}
  assert expected_splits["validation"] > 0  # The fixed file names do land in both splits.
  assert summary["found"] == len(good) + len(skipped)
  assert summary["written"] == expected_splits
  expected_reasons = {}
  for reason in skipped.values():
    expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
  assert summary["skipped"] == expected_reasons
  assert {f["path"]: f["reason"] for f in summary["skipped_files"]} == skipped
  on_disk = json.loads((data_dir / "my_photos/1.0.0/prepare_summary.json").read_text())
  assert on_disk == summary
  assert not (data_dir / prepare_chunks.WORK_FOLDER / "my_photos").exists()  # Cleaned up.


def test_data_source_reads_dataset(photo_folder, prepared_photo_folder):
  root, good, _ = photo_folder
  data_dir, summary = prepared_photo_folder
  seen = {}
  for split in ("train", "validation"):
    records = read_split("my_photos", data_dir, split)
    assert len(records) == summary["written"][split]
    assert all(splits.hash_split(rel, VALIDATION_PERCENT) == split for rel in records)
    for image in records.values():
      assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
      assert max(image.shape[:2]) <= MAX_SIDE
    seen.update(records)
  assert sorted(seen) == good
  # JPEG 95 with 4:4:4 chroma (the default): records close to the decoded, flattened, resized
  # file (measured 38.6-41.3 dB on these 128 px images).
  for rel in ("home/astronaut_0.jpg", "odd/rgba.png", "odd/cmyk.jpg", "odd/deep16.png"):
    decoded = images.read_image(root / rel)
    expected = prepare_chunks.resize_to_max_side(
        images.composite_on_white(decoded.rgb, decoded.alpha), MAX_SIDE)
    assert seen[rel].shape == expected.shape
    assert _psnr(seen[rel], expected) > 36, rel
  # The small crop (100x90) is stored as is, not enlarged.
  assert seen["trips/2023/astronaut_2.webp"].shape[:2] == (100, 90)
  assert (seen["odd/rgba.png"][:, :20] == 255).all()  # Transparent part -> white.


def test_rerun_is_a_no_op(photo_folder, prepared_photo_folder):
  root, _, _ = photo_folder
  data_dir, summary = prepared_photo_folder
  shard = next((data_dir / "my_photos/1.0.0").glob("*train.array_record*"))
  mtime = shard.stat().st_mtime_ns
  again = prepare.prepare(root, "my_photos", data_dir, max_side=MAX_SIDE,
                          validation_percent=VALIDATION_PERCENT, workers=2, chunk_size=4,
                          progress=False)
  assert again == summary
  assert shard.stat().st_mtime_ns == mtime


def test_changed_folder_rebuilds(photo_folder, tmp_path):
  root, good, _ = photo_folder
  data_dir = tmp_path / "tfds"
  first = prepare.prepare(root, "my_photos", data_dir, max_side=MAX_SIDE, validation_percent=0,
                          workers=1, chunk_size=64, progress=False)
  assert first["written"] == {"train": len(good), "validation": 0}
  assert first["notes"] == []  # 0% asked for: an absent validation split is no surprise.
  assert not list((data_dir / "my_photos/1.0.0").glob("*validation*"))
  extra = tmp_path / "more"
  extra.mkdir()
  (extra / "new.png").write_bytes((root / good[0]).read_bytes())
  # A different source folder under the same name replaces the old dataset.
  second = prepare.prepare(extra, "my_photos", data_dir, max_side=MAX_SIDE, validation_percent=0,
                           workers=1, progress=False)
  assert second["written"] == {"train": 1, "validation": 0}
  assert len(read_split("my_photos", data_dir, "train")) == 1


def test_short_side_and_jpeg_records(photo_folder, tmp_path):
  """--short_side caps the shorter side (aspect kept, small images kept as they are); records
  are 4:4:4 JPEGs that the train transform crops through its JPEG path."""
  root, _, _ = photo_folder
  assert prepare_chunks.resize_to_max_side(np.zeros((300, 600, 3), np.uint8), 512, 100).shape == (
      100, 200, 3)  # The shorter side binds before the longer.
  assert prepare_chunks.resize_to_max_side(np.zeros((300, 600, 3), np.uint8), 400, 250).shape == (
      200, 400, 3)  # The longer side binds.
  assert prepare_chunks.resize_to_max_side(np.zeros((50, 80, 3), np.uint8), 512, 64).shape == (
      50, 80, 3)  # Never enlarged.
  summary = prepare.prepare(root / "home", "short_photos", tmp_path, max_side=512, short_side=96,
                            validation_percent=0, workers=1, progress=False)
  assert summary["options"]["short_side"] == 96 and summary["options"]["image_format"] == "jpeg"
  stored = read_split("short_photos", tmp_path, "train", decode=False)
  assert len(stored) == 4
  # The camera-style 4:2:0 option: chroma at half resolution, smaller files.
  prepare.prepare(root / "home", "short_photos_420", tmp_path, max_side=512, short_side=96,
                  jpeg_chroma="420", validation_percent=0, workers=1, progress=False)
  stored_420 = read_split("short_photos_420", tmp_path, "train", decode=False)
  for rel, encoded in stored_420.items():
    assert Image.open(io.BytesIO(encoded)).layer[0][1:3] == (2, 2)  # Luma 2x2: chroma halved.
    assert len(encoded) < len(stored[rel])
  transform = pipeline.TrainTransform(64, 0.35, flip=True)
  for rel, encoded in stored.items():
    decoded = images.read_image(root / "home" / rel)
    expected = prepare_chunks.resize_to_max_side(decoded.rgb, 512, 96)
    assert min(expected.shape[:2]) == 96, rel  # These photos are larger: shrunk to 96.
    header = jpeg.read_jpeg_header(encoded)
    assert header is not None and (header.height, header.width) == expected.shape[:2]
    assert Image.open(io.BytesIO(encoded)).layer[1][1:3] == (1, 1)  # Chroma not subsampled.
    record = images.read_image(encoded).rgb
    assert _psnr(record, expected) > 36, rel  # Measured 39.5-42.7 dB at 96 px.
    crop = transform.random_map({"image": encoded}, np.random.default_rng(0))["image"]
    assert crop.shape == (64, 64, 3) and crop.std() > 10


def test_png_format_is_lossless_and_keeps_earlier_datasets_current(photo_folder, tmp_path):
  """--image_format=png stores the resized pixels exactly, and its chunk and source keys are
  those of datasets prepared before the format option existed."""
  root, _, _ = photo_folder
  assert prepare_chunks.Options(image_format="png").key() == {
      "max_side": 512, "min_side": images.DEFAULT_MIN_SIDE,
      "max_pixels": images.DEFAULT_MAX_PIXELS}
  summary = prepare.prepare(root / "odd", "png_photos", tmp_path, max_side=MAX_SIDE,
                            image_format="png", validation_percent=0, workers=1, progress=False)
  assert "image_format" not in summary["options"]
  stored = read_split("png_photos", tmp_path, "train", decode=False)
  records = read_split("png_photos", tmp_path, "train")
  assert len(records) == 4
  for rel, image in records.items():
    assert stored[rel].startswith(b"\x89PNG")
    decoded = images.read_image(root / "odd" / rel)
    expected = prepare_chunks.resize_to_max_side(
        images.composite_on_white(decoded.rgb, decoded.alpha), MAX_SIDE)
    np.testing.assert_array_equal(image, expected)


def test_bad_arguments(photo_folder, tmp_path):
  root, _, _ = photo_folder
  with pytest.raises(ValueError, match="snake_case"):
    prepare.prepare(root, "My Photos", tmp_path, progress=False)
  with pytest.raises(ValueError, match="snake_case"):
    prepare.prepare(root, "2023", tmp_path, progress=False)
  with pytest.raises(ValueError, match="image_format"):
    prepare.prepare(root, "my_photos", tmp_path, image_format="webp", progress=False)
  with pytest.raises(ValueError, match="jpeg_chroma"):
    prepare.prepare(root, "my_photos", tmp_path, jpeg_chroma="422", progress=False)
  with pytest.raises(ValueError, match="jpeg_quality"):
    prepare.prepare(root, "my_photos", tmp_path, jpeg_quality=0, progress=False)
  with pytest.raises(ValueError, match="no image files"):
    prepare.prepare(tmp_path, "empty_folder", tmp_path, progress=False)
  (tmp_path / "someone_else/1.0.0").mkdir(parents=True)
  with pytest.raises(FileExistsError):
    prepare.prepare(root, "someone_else", tmp_path, progress=False)
  result = subprocess.run(
      [sys.executable, "-m", "colorjax.prepare", f"--src={root}", "--name=MyPhotos",
       f"--data_dir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True)
  assert result.returncode == 2
  assert "invalid dataset name 'MyPhotos'" in result.stderr and "my_photos" in result.stderr


def test_prepare_stores_the_folder_classes_as_tfds_labels(class_root, tmp_path):
  pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")
  summary = prepare.prepare(class_root, "class_photos", tmp_path, max_side=64,
                            validation_percent=0.0, min_side=8, workers=1, progress=False)
  assert summary["classes"] == sorted(PHOTOS)
  config = labelled_config(class_root)
  with config.unlocked():
    config.data.name, config.data.data_dir = "class_photos", str(tmp_path)
  source = sources.create_source(config.data, train=True)
  assert sources.class_names(source) == sorted(PHOTOS)
  assert len(source) == len(PHOTOS) * CROPS_PER_CLASS
  for i in range(len(source)):
    record = source[i]
    assert sorted(PHOTOS)[record["label"]] == images.folder_class(record["path"].decode())
  batch = next(iter(pipeline.create_train_dataset(config)))
  assert set(np.unique(batch["label"])) <= set(range(len(PHOTOS)))
