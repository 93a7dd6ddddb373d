"""Dense optical flow and warping (OpenCV), shared by the smoother and the flicker measure.

DIS (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search") by default; Farneback
(2003) and scikit-image's iterative Lucas-Kanade for comparison (benchmarks/README.md, "Videos").
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.registration import optical_flow_ilk

# Our frames are small: OpenCV's own thread pool would fight JAX and FFmpeg for the cores.
cv2.setNumThreads(1)


def to_uint8_l(l: np.ndarray) -> np.ndarray:
  """L in [0, 100] -> uint8 in [0, 255], the input DIS takes."""
  return np.clip(np.asarray(l, np.float32) * 2.55 + 0.5, 0, 255).astype(np.uint8)


class DenseFlow:
  """Dense optical flow between uint8 gray images: `flow(a, b)` gives, for every pixel x of a,
  the displacement d with a(x) ~ b(x + d)."""

  def __init__(self, method: str = "dis_medium"):
    self.method = method
    if method.startswith("dis_"):
      presets = {"dis_ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                 "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                 "dis_medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
      if method not in presets:
        raise ValueError(f"unknown flow method {method!r}; one of {sorted(presets)}, "
                         "farneback, ilk")
      self._dis = cv2.DISOpticalFlow_create(presets[method])
    elif method not in ("farneback", "ilk"):
      raise ValueError(f"unknown flow method {method!r}")

  def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if self.method.startswith("dis_"):
      return self._dis.calc(a, b, None)
    if self.method == "farneback":
      # Farneback (2003) with OpenCV's commonly used settings (pyramid 0.5, 3 levels, 15 px).
      return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    # skimage returns (row, col) flow such that b(x + v) ~ a(x) for (reference a, moving b).
    v, u = optical_flow_ilk(a.astype(np.float32), b.astype(np.float32), radius=7)
    return np.stack([u, v], axis=-1).astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(image sampled at x + flow(x), bilinear; mask of x + flow(x) inside the image)."""
  h, w = flow.shape[:2]
  gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
  mx, my = gx + flow[..., 0], gy + flow[..., 1]
  out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
  return out, inside


def fb_inconsistency(back: np.ndarray, fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Forward-backward check of Sundaram et al. 2010 for the backward flow `back` (t -> t-1)
  and the forward flow `fwd` (t-1 -> t): (|back + fwd(x + back)|^2, the check's tolerance
  0.01 (|back|^2 + |fwd(x + back)|^2) + 0.5) per pixel of frame t."""
  fwd_at, _ = warp(fwd, back)
  err = np.sum(np.square(back + fwd_at), axis=-1)
  tol = 0.01 * (np.sum(np.square(back), axis=-1) + np.sum(np.square(fwd_at), axis=-1)) + 0.5
  return err, tol
