"""What a training run prints: the compile line, progress lines off a terminal, the summary."""

import io
import json
import os

import numpy as np

from colorjax.core import console


def test_progress_lines_off_a_terminal():
  stream = io.StringIO()  # Not a TTY: plain lines, every `every_secs`, and the last step.
  with console.TrainProgress(0, 4, batch_size=8, every_secs=0.0, stream=stream) as progress:
    for step in range(1, 5):
      progress.step_done(step, {"g_loss": np.float32(step)})
      progress.losses({"g_loss": 2.5, "d_loss": 0.25, "g_grad_norm": 9.0})
    progress.evaluated(4, {"psnr": 21.5, "gray_psnr": 19.0, "ab_error": 3.0})
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith("training from scratch to step 4; compiling the train step")
  assert lines[1].startswith("compiled and ran the first step in ")
  assert lines[2].startswith("step 2/4 (50%) | ") and "images/s" in lines[2]
  assert "g_loss=2.5 d_loss=0.25" in lines[2] and "ETA " in lines[2]
  assert "g_grad_norm" not in lines[2]  # Losses only: the rest is in TensorBoard.
  assert lines[-2].startswith("step 4/4 (100%)") and "ETA" not in lines[-2]
  assert lines[-1] == "eval at step 4: psnr=21.5, gray_psnr=19"


def test_progress_of_another_process_prints_nothing():
  stream = io.StringIO()
  with console.TrainProgress(0, 2, 8, enabled=False, stream=stream) as progress:
    progress.step_done(1, {})
    progress.note("x")
  assert stream.getvalue() == ""


def test_summary_says_where_everything_is(tmp_path):
  workdir = str(tmp_path)
  for step in ("200", "600"):
    os.makedirs(os.path.join(workdir, "checkpoints", step))
  os.makedirs(os.path.join(workdir, "samples"))
  open(os.path.join(workdir, "samples", "step_00000600.png"), "wb").close()
  os.makedirs(os.path.join(workdir, "eval"))
  with open(os.path.join(workdir, "eval", "latest.json"), "w") as f:
    json.dump({"step": 600, "model": {"psnr": 20.21}, "gray_baseline": {"psnr": 18.9}}, f)
  text = console.run_summary(workdir, 372.0)
  assert text.splitlines()[0] == "done in 6m12s, at step 600"
  assert "steps 200, 600" in text and "step_00000600.png" in text
  assert "PSNR 20.21 dB, gray baseline 18.90" in text
  assert f"tensorboard --logdir {workdir}" in text
  assert console.duration(3725) == "1h02m" and console.duration(42.4) == "42s"
