"""The comparison command: real training of tiny configs, one table and one sample grid."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from colorjax import compare
from colorjax.core import config_files
from colorjax.models import unet
from tests.helpers import tiny_config

NAMES = ("lsgan", "regression_l1")
GRID_ROWS = 4


def _budget():
  return compare.Budget(steps=2, image_size=16, batch_size=8, eval_images=6, seed=0)


def _table_rows(markdown: str) -> list[list[str]]:
  lines = [line for line in markdown.splitlines() if line.startswith("| ")]
  return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@pytest.mark.slow  # Trains two configs (~70 s).
def test_compare_writes_table_and_grid_and_reuses_trained_runs(tmp_path):
  workdir, out = str(tmp_path / "runs"), str(tmp_path / "out")
  rows, facts = compare.compare(NAMES, tiny_config, _budget(), workdir, out,
                                header="# Test comparison", grid_rows=GRID_ROWS)

  report = open(os.path.join(out, "comparison.md")).read()
  assert report.startswith("# Test comparison")
  table = _table_rows(report)
  header, body = table[0], table[1:]
  assert header[0] == "config" and "PSNR (dB) ↑" in header and "train images/s" in header
  assert [r[0] for r in body] == [*NAMES, "gray baseline (ab = 0)"]
  assert all(len(r) == len(header) for r in body)
  for row in body[:-1]:  # Trained configs have finite metrics and a measured speed.
    assert all(np.isfinite(float(cell)) for cell in row[1:])
  # The gray baseline predicts no colour: zero colourfulness, and it has no training cost.
  assert float(body[-1][header.index("colourfulness")]) == 0.0
  assert body[-1][-2:] == ["–", "–"]
  assert facts["num_eval_images"] == 6

  # Rows: eval images; columns: gray input, one per config, ground truth; 16 px + 2 px padding,
  # enlarged 2x.
  grid = np.asarray(Image.open(os.path.join(out, "comparison.png")))
  cell = 16 + 2
  assert grid.shape == (2 * (GRID_ROWS * cell + 2), 2 * ((len(NAMES) + 2) * cell + 2), 3)
  first_column = grid[4:4 + 32, 4:4 + 32].astype(int)
  assert np.all(first_column[..., 0] == first_column[..., 1])  # The gray input is gray...
  truth = grid[4:4 + 32, -4 - 32:-4].astype(int)
  assert np.abs(truth[..., 0] - truth[..., 2]).max() > 10  # ...and the truth is in colour.

  # Each config trained into its own workdir; a rerun reuses it, and keeps hand-written notes.
  record_path = os.path.join(workdir, "lsgan", compare._TRAIN_RECORD)
  first_record = json.load(open(record_path))
  assert first_record["steps"] == 2 and first_record["resumed_from"] == 0
  with open(os.path.join(out, "comparison.md"), "a") as f:
    f.write("\n## Notes\n\nKept across reruns.\n")
  rows_again, _ = compare.compare(NAMES, tiny_config, _budget(), workdir, out,
                                  header="# Test comparison", grid_rows=GRID_ROWS)
  assert json.load(open(record_path)) == first_record
  assert [r.metrics["psnr"] for r in rows_again] == pytest.approx([r.metrics["psnr"] for r in rows])
  assert open(os.path.join(out, "comparison.md")).read().endswith("Kept across reruns.\n")


def test_unet_depth_follows_the_image_size():
  assert [unet.num_downs_for(s) for s in (32, 64, 128, 256)] == [5, 6, 7, 8]
  with pytest.raises(ValueError, match="power-of-two"):
    unet.num_downs_for(96)
  config = compare.budget_config(config_files.load("pix2pix"), _budget())
  assert config.model.generator_kwargs.num_downs == 4 and config.data.image_size == 16
  assert config.eval_every_steps > config.num_train_steps  # No eval inside the loop.
