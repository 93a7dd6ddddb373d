"""Colorizing arrays of any size with a trained model: `Colorizer.from_workdir(workdir)`.

The path from a photo to its colorized version:

1. Full resolution: the lightness L (CIE Lab) of the input. Gray inputs are read as sRGB gray
   (R = G = B); colour inputs count only through their luminance, exactly what training saw.
2. Render size: L is resized (antialiased) to a square of `render_size` pixels, the size the
   model was trained at, and the EMA generator predicts ab there.
3. Full resolution again: ab is upsampled (bilinear) to the input's size and recombined with
   the input's own full-resolution L, so every edge and texture of the original is kept; only
   the chroma, which the eye resolves much more coarsely than lightness, comes from the model.

Why a square resize and not padding: the generator is fully convolutional and trained on
square crops, and a single square shape lets images of any aspect ratio share one compiled
model call and one batch. Padding would feed the model borders it never saw in training (and
colour them), and waste model compute on them, in exchange for keeping the aspect ratio; the
squeeze of a 4:3 or 16:9 photo barely changes the local statistics the model colours from,
and the chroma is upsampled back onto the undistorted full-resolution L anyway.

User hints (a model trained with `config.model.hints`, Zhang et al. 2017): `colorizer(photo,
hints=[(x, y, (r, g, b)), ...])` asks for colour (r, g, b) at full-resolution pixel (x, y).
Each hint's ab is the a, b of Lab(r, g, b), the chroma of the colour the user picked; the
result keeps the photo's own L there, so a hint sets hue and saturation, never lightness (a
dark red picked for a bright wall gives a bright red wall). The hints become the hint map and
mask at the render size (`hints.rasterize`: a `hint_patch_size` square of render pixels each)
and go into the model with L; without hints (None or []) the result is the automatic one.

Compilation: the model part is one jitted function, compiled once per (batch, render size);
the full-resolution steps (Lab conversion, resizes, recombination) are jitted per image shape,
elementwise kernels that compile in a fraction of a second and run fused.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from typing import Any, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from colorjax.color import hints as hints_lib
from colorjax.color import lab
from colorjax.core import checkpoint_trees
from colorjax.core import console
from colorjax.core import errors

PyTree = Any
CONFIG_FILE = "config.json"
_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
# A user hint: (x, y, (r, g, b)), full-resolution pixel coordinates and an 8-bit sRGB colour.
Hint = tuple[float, float, tuple[int, int, int]]


# ------------------------------------------------------------------------------------------
# Pure array functions (shared with colorjax.export).
# ------------------------------------------------------------------------------------------
def as_hwc(image: np.ndarray) -> np.ndarray:
  """Checks dtype and layout; returns (H, W, C) with C in {1, 3, 4}."""
  image = np.asarray(image)
  if image.dtype not in _SCALES:
    raise TypeError(f"images must be uint8 or uint16, got {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"images must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                     f"got shape {image.shape}")
  if image.shape[0] < 1 or image.shape[1] < 1:
    raise ValueError(f"empty image of shape {image.shape}")
  return image


def _split(image: jax.Array) -> tuple[jax.Array, jax.Array | None]:
  """(H, W, C) in [0, 1] -> (RGB (H, W, 3), alpha (H, W, 1) or None)."""
  channels = image.shape[-1]
  if channels == 1:
    return jnp.repeat(image, 3, axis=-1), None
  if channels == 4:
    return image[..., :3], image[..., 3:]
  return image, None


def lightness(rgb: jax.Array) -> jax.Array:
  """sRGB in [0, 1] (..., 3) -> L in [0, 100] (..., 1)."""
  return lab.rgb_to_lab(rgb)[..., :1]


def prepare(image: jax.Array, render_size: int) -> tuple[jax.Array, jax.Array]:
  """uint8/uint16 (..., H, W, C) -> (full-resolution L (..., H, W, 1) in [0, 100],
  normalised L (..., R, R, 1) for the model)."""
  scale = _SCALES[np.dtype(image.dtype)]
  rgb, alpha = _split(image.astype(jnp.float32) / scale)
  l_full = lightness(rgb)
  # The model sees the picture as displayed on white: transparent pixels often hold arbitrary
  # colours that would otherwise bleed into their visible neighbours' predicted colours.
  l_model = l_full if alpha is None else lightness(rgb * alpha + (1.0 - alpha))
  shape = l_model.shape[:-3] + (render_size, render_size, 1)
  l_render = jax.image.resize(l_model, shape, "linear", antialias=True)
  return l_full, lab.normalize_l(l_render)


def finish(image: jax.Array, l_full: jax.Array, ab_norm: jax.Array) -> jax.Array:
  """Recombines full-resolution L with upsampled ab; returns the input's dtype and channels
  ((..., H, W, 3), or (..., H, W, 4) with the input's alpha)."""
  shape = l_full.shape[:-1] + (2,)
  ab = jax.image.resize(lab.denormalize_ab(ab_norm.astype(jnp.float32)), shape, "linear")
  rgb = lab.lab_to_rgb(jnp.concatenate([l_full, ab], axis=-1))
  scale = _SCALES[np.dtype(image.dtype)]
  out = jnp.round(rgb * scale).astype(image.dtype)
  if image.shape[-1] == 4:
    out = jnp.concatenate([out, image[..., 3:]], axis=-1)
  return out


def hint_lab(hints: Sequence[Hint] | None) -> list[tuple[float, float, float, float]]:
  """User hints (x, y, (r, g, b)) -> (x, y, a, b): a, b of the picked colour's CIE Lab.

  Raises ValueError naming the first malformed hint (not a pair of coordinates and three
  integers 0-255).
  """
  points = []
  for i, hint in enumerate(hints or ()):
    try:
      x, y, colour = hint
      r, g, b = colour
      x, y = float(x), float(y)
    except (TypeError, ValueError):
      raise ValueError(f"hint {i}: {hint!r} is not (x, y, (r, g, b))") from None
    if not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in (r, g, b)):
      raise ValueError(f"hint {i}: colour {colour!r} is not three integers 0-255")
    points.append((x, y, np.asarray([r, g, b], np.float32) / 255.0))
  if not points:
    return []
  ab = np.asarray(lab.rgb_to_lab(np.stack([rgb for _, _, rgb in points])))[:, 1:]
  return [(x, y, float(a), float(b)) for (x, y, _), (a, b) in zip(points, ab)]


def apply_generator(generator: Any, decode: Any, variables: PyTree,
                    l_norm: jax.Array) -> jax.Array:
  """The EMA generator in inference mode: normalised L (B, R, R, 1) -> normalised ab; a hint
  model's input is L with its hint map and mask, (B, R, R, 4)."""
  out = generator.apply(variables, l_norm, train=False)
  return decode(out)


# ------------------------------------------------------------------------------------------
# Loading a trained model.
# ------------------------------------------------------------------------------------------
def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config the trainer saved in `<workdir>/config.json`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no {CONFIG_FILE} in {workdir}: is it a workdir written by "
                            "`python -m colorjax.main`?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


WEIGHTS = ("averaged", "raw")


def restore_inference_variables(config: ml_collections.ConfigDict, generator: Any, workdir: str,
                                step: int | None,
                                weights: str = "averaged") -> tuple[PyTree, int]:
  """(the generator's {"params", "batch_stats"}, step) from the workdir's checkpoint.

  Only those arrays are read (an Orbax partial restore): no optimizer or discriminator is built
  or loaded. `weights`: "averaged" (the moving average every command uses) or "raw" (the
  generator's own last weights, for comparison). `step`: None for the newest that loads; a
  damaged step is skipped with a warning and left in place (readers never modify the workdir),
  and a changed model gets the differing keys listed (`checkpointing.restore_newest_loadable`).
  """
  if weights not in WEIGHTS:
    raise ValueError(f"weights={weights!r}; valid: {', '.join(WEIGHTS)}")
  # (a) Orbax and the models load with the first model, not at import: checkpointing adds
  # ~240 ms and builders (Flax) ~130 ms to `import colorjax.inference` (~650 ms without them).
  # pylint: disable=g-import-not-at-top
  from colorjax.core import checkpointing
  from colorjax.training import builders
  # pylint: enable=g-import-not-at-top
  device = jax.sharding.make_single_device_sharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                          builders.abstract_generator_variables(config, generator))
  if weights == "averaged":
    parts = {"ema": abstract}
  else:
    parts = {"g/params": abstract["params"], "g/batch_stats": abstract["batch_stats"]}
  # A library call prints nothing unasked: Orbax's notices that a read-only manager is read-only
  # go (only those; its real warnings and errors stay).
  with console.read_only_notices_hidden():
    manager = checkpointing.make_manager(workdir, config.max_checkpoints_to_keep, read_only=True)
    try:
      restored, chosen = checkpointing.restore_newest_loadable(
          manager, checkpoint_trees.Subtrees(parts), step=step)
    finally:
      manager.close()
  if weights == "averaged":
    return restored["ema"], int(chosen)
  return {"params": restored["g/params"], "batch_stats": restored["g/batch_stats"]}, int(chosen)


def inference_conv(choice: str, platforms: Sequence[str] | None = None) -> str:
  """The convolution implementation for a forward pass (`layers.CONV_CHOICES`): "auto" is
  XLA's own convolution on every platform, the others name themselves.

  im2col (what "auto" means for training on a CPU, `layers.resolve_conv`) is there for the
  gradients, which XLA:CPU computes slowly; without gradients XLA's convolution is as fast or
  faster: 1.02x and 1.53x im2col for the pix2pix generator at 256 px batch 8 in two runs on this
  project's 2-core CPU (benchmarks/README.md, "CPU inference: JAX, ONNX Runtime, PyTorch"),
  9.3-9.7 against 6.5-7.0 images/s in issue 21's measurement.
  """
  # (a) Flax: ~130 ms more for `import colorjax.inference` (~650 ms without it).
  from colorjax.models import layers  # pylint: disable=g-import-not-at-top
  return "xla" if choice == "auto" else layers.resolve_conv(choice, platforms)


# ------------------------------------------------------------------------------------------
# The colorizer.
# ------------------------------------------------------------------------------------------
class Colorizer:
  """A trained generator that colorizes uint8 / uint16 arrays of any size.

  Outputs have the input's height, width and dtype: (H, W, 3) RGB, or (H, W, 4) RGBA with the
  input's alpha for (H, W, 4) inputs. Build one with `Colorizer.from_workdir(workdir)`.
  """

  def __init__(self, config: ml_collections.ConfigDict, generator: Any, decode: Any,
               variables: PyTree, step: int, render_size: int | None = None,
               batch_size: int = 8,
               hint_patch_size: int = hints_lib.USER_PATCH_SIZE):
    self.config = config
    self.generator = generator
    self.decode = decode
    self.variables = variables
    self.step = step
    self.render_size = int(render_size or config.data.image_size)
    self.batch_size = max(1, int(batch_size))
    # Whether the generator takes hints (L, hint ab, mask), and the side in render pixels of
    # the square each user hint covers (inside the 1-9 px of the training simulation).
    self.takes_hints = hints_lib.enabled(config)
    self.hint_patch_size = int(hint_patch_size)
    channels = hints_lib.input_channels(config)
    # Fails now, with the model's own message, on a render size it cannot take.
    jax.eval_shape(lambda l: apply_generator(generator, decode, variables, l),
                   jax.ShapeDtypeStruct((1, self.render_size, self.render_size, channels),
                                        jnp.float32))
    self._model = jax.jit(functools.partial(apply_generator, generator, decode))
    self._prepare = jax.jit(prepare, static_argnums=1)
    self._finish = jax.jit(finish)

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None,
                   render_size: int | None = None, batch_size: int = 8,
                   weights: str = "averaged", conv: str = "auto",
                   backend: str = "jax") -> "Colorizer":
    """Rebuilds the generator from `<workdir>/config.json` and restores its EMA weights.

    Only the generator is built and only its weights are read: no optimizer, loss or
    discriminator.

    Args:
      workdir: a training workdir (config.json and checkpoints/).
      step: the checkpoint step; None for the latest that loads.
      render_size: the side of the square the model runs at; None for the training size.
      batch_size: the most images one model call takes in `colorize_batch`.
      weights: "averaged" (the generator's moving average) or "raw" (its last weights).
      conv: the convolution implementation (`layers.CONV_CHOICES`); "auto" is the fastest for
        inference (`inference_conv`), whatever the training config chose (the weights fit
        either).
      backend: what runs the generator (`BACKENDS`): "jax", "onnxruntime" (an in-memory ONNX
        export run by ONNX Runtime on the CPU; needs the `onnx` extra) or "auto" (the faster of
        the two here, `resolve_backend`).
    """
    # (a) The models (Flax) load here, not at import: ~130 ms more for `import
    # colorjax.inference`, whose array functions export and serve use before any model exists.
    from colorjax.training import builders  # pylint: disable=g-import-not-at-top
    config = load_config(workdir)
    generator, decode = builders.make_generator(config, inference_conv(conv))
    variables, step = restore_inference_variables(config, generator, workdir, step, weights)
    if resolve_backend(backend) == "onnxruntime":
      # (c) An import cycle: colorjax.onnx.runtime subclasses Colorizer, so it imports this
      # module; (b) too: only this backend needs the onnx extra.
      from colorjax.onnx import runtime  # pylint: disable=g-import-not-at-top
      try:
        return runtime.OnnxRuntimeColorizer(config, generator, decode, variables, step,
                                            render_size, batch_size)
      except errors.UserError as e:
        if backend != "auto":
          raise
        # "auto" only picks the faster backend: a model the converter cannot express runs
        # in JAX, which runs every model.
        logging.info("%s; running it in JAX", e)
    return cls(config, generator, decode, variables, step, render_size, batch_size)

  def with_conv(self, conv: str, platforms: Sequence[str] | None = None) -> "Colorizer":
    """The same model and weights with convolutions computed by `conv` (`layers.CONV_CHOICES`,
    resolved by `inference_conv` for `platforms`, default the local backend), e.g. for an
    export."""
    generator = self.generator.clone(conv=inference_conv(conv, platforms))
    return Colorizer(self.config, generator, self.decode, self.variables, self.step,
                     self.render_size, self.batch_size, self.hint_patch_size)

  def predict_ab(self, l_norm: np.ndarray) -> np.ndarray:
    """Normalised L (B, R, R, 1) -> normalised ab (B, R, R, 2); pads B to a power of two so
    that at most log2(batch_size) + 1 batch shapes are ever compiled."""
    if self.takes_hints and l_norm.shape[-1] == 1:
      l_norm = hints_lib.automatic_input(jnp.asarray(l_norm))
    count = l_norm.shape[0]
    padded = 1 << max(0, count - 1).bit_length()
    if padded > count:
      l_norm = jnp.concatenate([l_norm, jnp.zeros((padded - count,) + l_norm.shape[1:],
                                                  l_norm.dtype)])
    return self._model(self.variables, l_norm)[:count]

  def hint_maps(self, image_hw: tuple[int, int],
                hints: Sequence[Hint] | None) -> tuple[np.ndarray, np.ndarray]:
    """(hint ab (R, R, 2), mask (R, R, 1)) of user hints on an image of `image_hw` (H, W)."""
    if hints and not self.takes_hints:
      raise ValueError("this model was trained without hints (config.model.hints=False); "
                       "train one with configs/hints.py to use them")
    return hints_lib.rasterize(hint_lab(hints), image_hw, self.render_size,
                               self.hint_patch_size)

  def colorize_batch(self, images: Sequence[np.ndarray],
                     hints: Sequence[Sequence[Hint] | None] | None = None) -> list[np.ndarray]:
    """Colorizes images of any sizes; the model runs on up to `batch_size` of them at once.

    `hints`: None, or one list of user hints (or None) per image (see `__call__`).
    """
    images = [as_hwc(image) for image in images]
    hints = [None] * len(images) if hints is None else list(hints)
    if len(hints) != len(images):
      raise ValueError(f"{len(hints)} hint lists for {len(images)} images")
    # Rasterised up front: a bad hint fails before any image is colorized.
    maps = [self.hint_maps(image.shape[:2], h) if h else None for image, h in zip(images, hints)]
    results = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      chunk_maps = maps[start:start + self.batch_size]
      prepared = [self._prepare(image, self.render_size) for image in chunk]
      model_in = [l_render for _, l_render in prepared]
      if any(m is not None for m in chunk_maps):  # Then every input carries hint channels.
        model_in = [hints_lib.automatic_input(l) if m is None else
                    hints_lib.generator_input(l, *m) for l, m in zip(model_in, chunk_maps)]
      ab = self.predict_ab(jnp.stack(model_in))
      for i, (image, (l_full, _)) in enumerate(zip(chunk, prepared)):
        results.append(np.asarray(self._finish(image, l_full, ab[i])))
    return results

  def __call__(self, image: np.ndarray, hints: Sequence[Hint] | None = None) -> np.ndarray:
    """Colorizes one uint8 / uint16 image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).

    `hints` (a model trained with hints only): [(x, y, (r, g, b)), ...], colour (r, g, b)
    (8-bit sRGB) wanted at full-resolution pixel (x, y) (x to the right, y down); the result
    takes the a, b of that colour there and keeps the photo's lightness. None or [] gives the
    automatic result.
    """
    return self.colorize_batch([image], None if hints is None else [hints])[0]


# ------------------------------------------------------------------------------------------
# The generator's backend: JAX, or ONNX Runtime on the CPU (`colorjax.onnx.runtime`).
# ------------------------------------------------------------------------------------------
BACKENDS = ("auto", "jax", "onnxruntime")


def onnxruntime_available() -> bool:
  """Whether the `onnx` extra (onnx and onnxruntime) is installed."""
  return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def resolve_backend(choice: str) -> str:
  """"jax" or "onnxruntime" for `choice` (one of `BACKENDS`).

  "auto" is ONNX Runtime when JAX runs on the CPU and the `onnx` extra is installed, JAX
  otherwise (GPUs, TPUs). On the CPU ONNX Runtime ran the pix2pix generator at 256 px batch 8
  at 0.98-1.15x JAX's speed, and its first call on a 12 MP photo took 35-40% less time (no XLA
  compilation of the model): benchmarks/README.md, "CPU inference: JAX, ONNX Runtime, PyTorch".
  """
  if choice not in BACKENDS:
    raise ValueError(f"unknown backend {choice!r}; valid: {', '.join(BACKENDS)}")
  if choice != "auto":
    return choice
  cpu = jax.default_backend() == "cpu"
  return "onnxruntime" if cpu and onnxruntime_available() else "jax"
