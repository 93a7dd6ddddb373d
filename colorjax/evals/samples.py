"""The "samples" evaluator: a labelled grid of eval images and their colorizations.

Columns: gray input | averaged generator | raw generator | truth; one row per image, drawn
evenly from across the eval split. Written as `<workdir>/samples/step_{step:08d}.png` and the
TensorBoard image `samples/gray_averaged_raw_truth`.

  config.evals.samples = dict(type="samples", every=0, num_samples=8)  # 0: sample_every_steps

Only the picked images leave the devices: a jitted gather brings each batch's picked rows to
every host, replicated (the pass stops after the last), and both generators then run once on
those `num_samples` images alone, never on the whole split: the metrics evaluator's pass over
the split, at the same steps, is not done twice. In inference mode (BatchNorm's running
statistics) an image's colours do not depend on the batch it is in.
"""

from __future__ import annotations

import os
from typing import Iterator

import jax
import ml_collections
import numpy as np

from colorjax.color import lab
from colorjax.core import distributed
from colorjax.evals import base
from colorjax.evals import visualize

IMAGE_KEY = "samples/gray_averaged_raw_truth"
LABELS = ("gray input", "averaged G", "raw G", "truth")


class SampleRows:
  """Picks `num` images evenly spaced over an eval pass of `total` images (sorted folders and
  TFDS splits often group by class: the first rows alone would all be airplanes)."""

  def __init__(self, total: int, num: int):
    self._wanted = set(np.unique(np.linspace(0, max(total - 1, 0), min(num, total))
                                 .round().astype(int)).tolist())
    self._last = max(self._wanted, default=-1)
    self._seen = 0

  def take(self, mask: np.ndarray) -> np.ndarray:
    """Positions, in a batch whose real rows `mask` marks, of the wanted images (int32)."""
    real = np.flatnonzero(np.asarray(mask))
    picked = [row for i, row in enumerate(real) if self._seen + i in self._wanted]
    self._seen += len(real)
    return np.asarray(picked, np.int32)

  @property
  def done(self) -> bool:
    """Whether every wanted image has been seen."""
    return self._seen > self._last


def labelled_grid(images: np.ndarray, averaged: np.ndarray, raw: np.ndarray,
                  scale: int) -> np.ndarray:
  """uint8 grid with the columns of `LABELS` from uint8 truth and float [0, 1] predictions."""
  columns = [np.asarray(lab.gray_rgb(images)), averaged, raw,
             np.asarray(images, np.float32) / 255.0]
  return visualize.sample_grid(*columns, scale=scale, labels=LABELS)


@base.EVALUATORS.register("samples")
class SampleGrid(base.Evaluator):
  """The sample grid PNG and TensorBoard image."""

  default_every_key = "sample_every_steps"

  def __init__(self, context: base.EvalContext, options: ml_collections.ConfigDict):
    super().__init__(context, options)
    self.num_samples = options.get("num_samples", 8)
    # 32 px images are invisible at 1:1 in TensorBoard: enlarge small ones to about 128 px.
    self.scale = max(1, 128 // context.config.data.image_size)
    replicated, _ = distributed.shardings(context.mesh)
    # Indices and images padded to num_samples: each compiles once.
    self._gather = jax.jit(lambda images, index: images[index], out_shardings=replicated)
    rgb = context.predictor.rgb
    self._colorize = jax.jit(lambda variables, images: (rgb(variables["averaged"], images),
                                                        rgb(variables["raw"], images)),
                             out_shardings=replicated)

  @classmethod
  def check_options(cls, name: str, options: ml_collections.ConfigDict) -> None:
    num = options.get("num_samples", 8)
    if not isinstance(num, int) or num <= 0:
      raise ValueError(f"evals.{name}.num_samples must be a positive number of rows, got {num!r}")

  def run(self, variables: base.Variables, step: int) -> Iterator[tuple[str, np.ndarray]]:
    batches, total = self.context.batches()
    picker = SampleRows(total, self.num_samples)
    picked = []
    for images, mask in batches:
      index = picker.take(base.host_mask(mask))
      if index.size:
        padded = np.zeros((self.num_samples,), np.int32)
        padded[:index.size] = index
        rows = self._gather(images, base.replicated(padded, self.mesh))
        picked.append(np.asarray(rows)[:index.size])
      if picker.done:
        break
    if not picked:
      return
    truth = np.concatenate(picked)
    padded = np.zeros((self.num_samples,) + truth.shape[1:], truth.dtype)
    padded[:len(truth)] = truth
    averaged, raw = (np.asarray(x)[:len(truth)]
                     for x in self._colorize(variables, base.replicated(padded, self.mesh)))
    grid = labelled_grid(truth, averaged, raw, self.scale)
    if jax.process_index() == 0:
      visualize.save_png(os.path.join(self.workdir, "samples", f"step_{step:08d}.png"), grid)
    yield IMAGE_KEY, grid
