"""Motion-compensated temporal smoothing of ab (colorjax/video/smoothing.py) on a real pan, without
a model. Smoothing a trained model's videos: tests/video/test_colorizing.py."""

import numpy as np
import skimage.color

from colorjax import video
from tests.helpers import video_clips

W, H = 192, 108  # A 16:9 test clip, as tests/video/test_colorizing.py's.


def test_smoother_removes_injected_noise_along_the_motion():
  """Per-frame noise on the true ab of a real pan: the smoothed ab is closer to the truth."""
  frames = list(video_clips.make_clip("pan", W, H, 12))
  labs = [skimage.color.rgb2lab(f).astype(np.float32) for f in frames]
  rng = np.random.default_rng(0)
  smoother = video.TemporalSmoother(0.8)
  raw_err, smooth_err = [], []
  for lab in labs:
    noise = rng.normal(0, 8.0, (H // 12, W // 12, 2)).astype(np.float32)
    noisy = lab[..., 1:] + np.kron(noise, np.ones((12, 12, 1), np.float32))  # Blotchy noise.
    out = smoother(lab[..., 0], noisy)
    raw_err.append(np.abs(noisy - lab[..., 1:]).mean())
    smooth_err.append(np.abs(out - lab[..., 1:]).mean())
  assert np.mean(smooth_err[4:]) < 0.7 * np.mean(raw_err[4:]), (raw_err, smooth_err)
