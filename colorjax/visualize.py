"""Sample grids: one row per image, columns L input | prediction | ground truth."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def sample_grid(gray: np.ndarray, *columns: np.ndarray, pad: int = 2) -> np.ndarray:
  """uint8 grid from (N, H, W, 3) float [0, 1] columns; `gray` may be (N, H, W, 1)."""
  gray = np.repeat(gray, 3, axis=-1) if gray.shape[-1] == 1 else gray
  cols = [gray, *columns]
  n, h, w, _ = gray.shape
  grid = np.ones((n * (h + pad) + pad, len(cols) * (w + pad) + pad, 3), np.float32)
  for r in range(n):
    for c, col in enumerate(cols):
      top, left = pad + r * (h + pad), pad + c * (w + pad)
      grid[top:top + h, left:left + w] = col[r]
  return (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_png(path: str, image: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.png"
  Image.fromarray(image).save(tmp)
  os.replace(tmp, path)  # Never leave a half-written PNG behind.
