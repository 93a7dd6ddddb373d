"""Sample grids: one row per image, labelled columns (gray input | predictions | truth)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw

from colorjax.core import files

_LABEL_HEIGHT = 14


def sample_grid(gray: np.ndarray, *columns: np.ndarray, pad: int = 2, scale: int = 1,
                labels: Sequence[str] = ()) -> np.ndarray:
  """uint8 grid from (N, H, W, 3) float [0, 1] columns; `gray` may be (N, H, W, 1).

  `scale` enlarges every image by pixel repetition (a 32 px image is invisible at 1:1 in
  TensorBoard); `labels` names the columns in a header row.
  """
  gray = np.repeat(gray, 3, axis=-1) if gray.shape[-1] == 1 else gray
  cols = [gray, *columns]
  if scale > 1:
    cols = [np.repeat(np.repeat(col, scale, axis=1), scale, axis=2) for col in cols]
  n, h, w, _ = cols[0].shape
  top0 = _LABEL_HEIGHT if labels else 0
  grid = np.ones((top0 + n * (h + pad) + pad, len(cols) * (w + pad) + pad, 3), np.float32)
  for r in range(n):
    for c, col in enumerate(cols):
      top, left = top0 + pad + r * (h + pad), pad + c * (w + pad)
      grid[top:top + h, left:left + w] = col[r]
  grid = (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)
  if not labels:
    return grid
  image = Image.fromarray(grid)
  draw = ImageDraw.Draw(image)
  for c, label in enumerate(labels):
    draw.text((pad + c * (w + pad) + 2, 1), label, fill=(0, 0, 0))
  return np.asarray(image)


def save_png(path: str, image: np.ndarray) -> None:
  with files.atomic_path(path, suffix=".png") as tmp:  # Never a half-written PNG.
    Image.fromarray(image).save(tmp)
