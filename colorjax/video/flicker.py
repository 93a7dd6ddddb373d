"""Flicker and fidelity of a colorized video: the warping error of Lai et al. 2018 ("Learning
Blind Video Temporal Consistency"), PSNR and colourfulness (Hasler & Suesstrunk 2003)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from colorjax.color import lab
from colorjax.evals import metrics
from colorjax.video import flow as flow_lib


def _lab(rgb: np.ndarray) -> np.ndarray:
  return np.asarray(lab.rgb_to_lab(jnp.asarray(rgb, jnp.float32) / 255.0))


class FlickerMeter:
  """Accumulates, over the frames of a video in order, the warping error of Lai et al. 2018 and
  fidelity to the original colour frames.

  `add(original, output, cut=False)` takes uint8 RGB (H, W, 3) frames. The warping error of
  frame t is the mean Euclidean ab distance (Lab units) between output t and output t-1 warped
  to t, over the pixels that are not occluded; the flow is computed on the *original* frames,
  at full resolution, occlusion by the forward-backward check of Sundaram et al. 2010. Lai et
  al. used FlowNet2; here DIS ("medium"), which on the pan and zoom test clips at 480p is off
  the true motion by 0.12 / 0.27 px on average, where Farneback (2003) is off by 2.5 / 1.3 px
  (benchmarks/README.md, "Videos"). The smoother also uses DIS, but on a 256 px copy; where the
  true motion is known, pass it as `true_flow` (backward, t -> t-1, in pixels) for a measure
  that depends on no estimate at all. Pairs across a scene cut (`cut=True` on the first frame
  after it) are left out. Lai et al.'s own form, the mean squared RGB difference on [0, 1]
  (E_warp), is reported too.
  """

  def __init__(self, flow_method: str = "dis_medium"):
    self.flow = flow_lib.DenseFlow(flow_method)
    self.ab_errors: list[float] = []
    self.rgb_errors: list[float] = []
    self.psnrs: list[float] = []
    self.cf_output: list[float] = []
    self.cf_original: list[float] = []
    self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

  def add(self, original: np.ndarray, output: np.ndarray, cut: bool = False,
          true_flow: np.ndarray | None = None) -> None:
    orig_lab, out_lab = _lab(original), _lab(output)
    both = jnp.asarray(np.stack([output, original]), jnp.float32) / 255.0
    self.psnrs.append(float(metrics.psnr(both[:1], both[1:])[0]))
    cf = np.asarray(metrics.colorfulness(both))
    self.cf_output.append(float(cf[0]))
    self.cf_original.append(float(cf[1]))
    orig8 = flow_lib.to_uint8_l(orig_lab[..., 0])
    if self._prev is not None and not cut:
      prev8, prev_out_ab, prev_out = self._prev
      if true_flow is None:
        back = self.flow(orig8, prev8)
        err, tol = flow_lib.fb_inconsistency(back, self.flow(prev8, orig8))
        visible = err <= tol
      else:
        back, visible = true_flow.astype(np.float32), True
      warped_ab, inside = flow_lib.warp(prev_out_ab, back)
      warped_rgb, _ = flow_lib.warp(prev_out.astype(np.float32) / 255.0, back)
      valid = inside & visible
      if valid.any():
        dist = np.linalg.norm(out_lab[..., 1:] - warped_ab, axis=-1)
        self.ab_errors.append(float(dist[valid].mean()))
        sq = np.sum(np.square(output.astype(np.float32) / 255.0 - warped_rgb), axis=-1)
        self.rgb_errors.append(float(sq[valid].mean()))
    self._prev = (orig8, out_lab[..., 1:].astype(np.float32), output)

  def summary(self) -> dict[str, float]:
    return {"warp_error_ab": float(np.mean(self.ab_errors)) if self.ab_errors else float("nan"),
            "warp_error_rgb": float(np.mean(self.rgb_errors)) if self.rgb_errors else float("nan"),
            "psnr": float(np.mean(self.psnrs)),
            "colorfulness": float(np.mean(self.cf_output)),
            "colorfulness_original": float(np.mean(self.cf_original)),
            "frames": len(self.psnrs)}
