"""`python -m colorjax.prepare` killed mid-run (SIGKILL to its session): the rerun reuses the
finished chunks and writes the dataset an uninterrupted run writes."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="prepare writes TFDS datasets with TF (tf extra)")

from colorjax.data import prepare  # noqa: E402
from colorjax.data import prepare_chunks  # noqa: E402
from tests.helpers import REPO_ROOT  # noqa: E402
from tests.helpers.photo_folder import MAX_SIDE, VALIDATION_PERCENT, read_split  # noqa: E402

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).

tf.config.set_visible_devices([], "GPU")


def test_interrupted_run_resumes_and_matches(photo_folder, prepared_photo_folder, tmp_path):
  root, _, _ = photo_folder
  clean_dir, clean_summary = prepared_photo_folder
  data_dir = tmp_path / "tfds"
  work_dir = data_dir / prepare_chunks.WORK_FOLDER / "my_photos"
  command = [sys.executable, "-m", "colorjax.prepare", f"--src={root}", "--name=my_photos",
             f"--data_dir={data_dir}", f"--max_side={MAX_SIDE}",
             f"--validation_percent={VALIDATION_PERCENT}", "--workers=1", "--chunk_size=2",
             "--no_progress"]
  # A new session lets us kill the run and anything it started, and only that.
  process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 60
  while not list(work_dir.glob("*.pkl")) and process.poll() is None:
    assert time.monotonic() < deadline, "prepare wrote no chunk within 60s"
    time.sleep(0.005)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  # The kill was real: the dataset was not finished.
  assert not (data_dir / "my_photos/1.0.0" / prepare.SUMMARY_FILE).exists()
  finished = len(list(work_dir.glob("*.pkl")))
  assert finished >= 1
  assert finished < clean_summary["chunks"]["total"] or not (data_dir / "my_photos").exists()

  summary = prepare.prepare(root, "my_photos", data_dir, max_side=MAX_SIDE,
                            validation_percent=VALIDATION_PERCENT, workers=2, chunk_size=2,
                            progress=False)
  assert summary["chunks"]["reused"] == finished
  assert summary["written"] == clean_summary["written"]
  assert summary["skipped"] == clean_summary["skipped"]
  for split in ("train", "validation"):
    resumed = read_split("my_photos", data_dir, split)
    clean = read_split("my_photos", clean_dir, split)
    assert sorted(resumed) == sorted(clean)  # Same split for the same files.
    for rel in clean:
      np.testing.assert_array_equal(resumed[rel], clean[rel])
