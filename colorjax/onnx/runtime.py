"""ONNX Runtime as the generator's backend on the CPU: what `Colorizer.from_workdir(workdir,
backend="onnxruntime")` builds (and "auto" on a CPU where the `onnx` extra is installed,
`inference.resolve_backend`)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from colorjax import export
from colorjax import inference
from colorjax.color import hints as hints_lib
from colorjax.core import errors


class OnnxRuntimeColorizer(inference.Colorizer):
  """A `Colorizer` whose generator (and its decoding to ab) runs in ONNX Runtime on the CPU.

  The generator is exported to ONNX in memory (`export.onnx_generator`: the same graph the ONNX
  export holds, weights as constants, any batch size); reading the photos, the resizes and the
  Lab recombination stay the JAX functions of `colorjax.inference`, so every input `Colorizer`
  takes (gray, RGBA, uint16) gives the same output within one 8-bit level.
  """

  def __init__(self, *args: Any, **kwargs: Any):
    if not inference.onnxruntime_available():
      raise errors.UserError("the onnxruntime backend needs the onnx extra: "
                             "pip install 'colorjax[onnx]'")
    super().__init__(*args, **kwargs)
    # (b) The onnx extra: imported after the check above, so that without it the error is the
    # one line above, not a ModuleNotFoundError.
    import onnxruntime  # pylint: disable=g-import-not-at-top
    try:
      model = export.onnx_generator(self)
    except NotImplementedError as e:  # The converter's bounds (colorjax/onnx/rules.py).
      raise errors.UserError(f"the onnxruntime backend cannot run this model ({e}); use "
                             "--backend=jax") from e
    onnxruntime.set_default_logger_severity(3)  # Errors only: a library prints nothing unasked.
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    self._session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                 providers=["CPUExecutionProvider"])
    self._input = export.GENERATOR_INPUT

  def predict_ab(self, l_norm: np.ndarray) -> np.ndarray:
    """Normalised L (B, R, R, 1), or with hint channels (B, R, R, 4), -> normalised ab
    (B, R, R, 2), any B in one call."""
    if self.takes_hints and l_norm.shape[-1] == 1:
      l_norm = hints_lib.automatic_input(jnp.asarray(l_norm))
    l_norm = np.asarray(l_norm, np.float32)
    return self._session.run(None, {self._input: l_norm})[0]
