"""Export a trained colorizer for serving without colorjax: StableHLO and TF SavedModel.

  python -m colorjax.export --workdir=runs/lsgan --format=all [--out=runs/lsgan/export]

The serving signature (both formats) is the whole colorize path of `colorjax.inference`:

  colorize(rgb: uint8[b, h, w, 3]) -> uint8[b, h, w, 3]

A model trained with hints (configs/hints.py, Zhang et al. 2017) takes them as two more inputs
at the render size R (signature.json's "render_size"), as `colorjax.color.hints` lays them out:

  colorize(rgb: uint8[b, h, w, 3], hint_ab: float32[b, R, R, 2], hint_mask: float32[b, R, R, 1])

`hint_ab` is a, b / 110 where hinted and 0 elsewhere, `hint_mask` 1 where hinted; zeros give
the automatic result (`colorjax.color.hints.rasterize` makes both from (x, y, a, b) points).
The SavedModel of a hint model keeps the one-input signature and colorizes automatically.

`b`, `h` and `w` are symbolic: one export takes any batch size and any image size. Inside, the
luminance of `rgb` gives the full-resolution L, the model runs on L resized to a square of
`render_size` (--size; default the training size), and its ab is upsampled to (h, w) and
recombined with the full-resolution L. Gray photos are passed as R = G = B; colour inputs count
only through their luminance. The weights (EMA generator) are constants inside the export.

Files written in --out:
  * `model.stablehlo`: `jax.export` serialization; `load_stablehlo(path)` runs it with jax only.
  * `signature.json`: the signature above, the render size, the checkpoint step, platforms.
  * `savedmodel/`: TF SavedModel from `jax2tf` with a `serving_default` signature
    (input "rgb", output "output_0"), loadable with `tf.saved_model.load`. Needs TensorFlow
    (the `tf` extra); without it, --format=all writes the StableHLO files alone.

This module imports only jax, numpy, absl's flags and the standard library at the top, so that
`load_stablehlo` works in a process that has no colorjax model code loaded.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Sequence

from absl import flags
import jax
from jax import export as jax_export
import numpy as np

from colorjax.core import cli
from colorjax.core import errors
from colorjax.core import files

STABLEHLO_FILE = "model.stablehlo"
SIGNATURE_FILE = "signature.json"
SAVEDMODEL_DIR = "savedmodel"
INPUT_SHAPE = "b, h, w, 3"  # Symbolic batch, height and width.


def serving_function(colorizer: Any) -> Callable[[jax.Array], jax.Array]:
  """uint8 RGB (b, h, w, 3) -> colorized uint8 RGB (b, h, w, 3), weights closed over."""
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  render_size, variables = colorizer.render_size, colorizer.variables

  def colorize(rgb: jax.Array) -> jax.Array:
    l_full, l_render = inference.prepare(rgb, render_size)
    if getattr(colorizer, "takes_hints", False):  # A hint model, run without hints.
      from colorjax.color import hints  # pylint: disable=g-import-not-at-top
      l_render = hints.automatic_input(l_render)
    ab = inference.apply_generator(colorizer.generator, colorizer.decode, variables, l_render)
    return inference.finish(rgb, l_full, ab)
  return colorize


def hint_serving_function(colorizer: Any) -> Callable[..., jax.Array]:
  """`serving_function` of a hint model: (rgb, hint_ab (b, R, R, 2), hint_mask (b, R, R, 1))
  -> colorized uint8 RGB (b, h, w, 3)."""
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  from colorjax.color import hints  # pylint: disable=g-import-not-at-top
  render_size, variables = colorizer.render_size, colorizer.variables

  def colorize(rgb: jax.Array, hint_ab: jax.Array, hint_mask: jax.Array) -> jax.Array:
    l_full, l_render = inference.prepare(rgb, render_size)
    model_input = hints.generator_input(l_render, hint_ab, hint_mask)
    ab = inference.apply_generator(colorizer.generator, colorizer.decode, variables, model_input)
    return inference.finish(rgb, l_full, ab)
  return colorize


def _input_spec() -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(jax_export.symbolic_shape(INPUT_SHAPE), np.uint8)


def _input_specs(colorizer: Any) -> tuple[jax.ShapeDtypeStruct, ...]:
  """The exported function's inputs: rgb, and for a hint model the hint map and mask (their
  batch the same symbol as rgb's)."""
  rgb = _input_spec()
  if not getattr(colorizer, "takes_hints", False):
    return (rgb,)
  b = rgb.shape[0]
  size = colorizer.render_size
  return (rgb, jax.ShapeDtypeStruct((b, size, size, 2), np.float32),
          jax.ShapeDtypeStruct((b, size, size, 1), np.float32))


def lower_stablehlo(colorizer: Any,
                    platforms: Sequence[str] = ("cpu",)) -> jax_export.Exported:
  """The serving function exported for `platforms`, with convolutions computed their way.

  The model's convolution implementation is chosen here for the target platforms, not for the
  host doing the export (`layers.resolve_conv`): XLA's convolution as soon as one of them is
  an accelerator (one artifact serves them all), im2col + matmul for the CPU alone. The
  weights are the same either way.
  """
  colorizer = colorizer.with_conv("auto", platforms)
  serve = (hint_serving_function if getattr(colorizer, "takes_hints", False)
           else serving_function)
  return jax_export.export(jax.jit(serve(colorizer)),
                           platforms=tuple(platforms))(*_input_specs(colorizer))


def export_stablehlo(colorizer: Any, out_dir: str,
                     platforms: Sequence[str] = ("cpu",)) -> jax_export.Exported:
  """Writes `model.stablehlo` and `signature.json` into `out_dir`; returns the Exported."""
  exported = lower_stablehlo(colorizer, platforms)
  os.makedirs(out_dir, exist_ok=True)
  files.write_bytes(os.path.join(out_dir, STABLEHLO_FILE), bytes(exported.serialize()))
  signature = {
      "function": "colorize(rgb) -> rgb",
      "inputs": [{"name": "rgb", "dtype": "uint8", "shape": ["b", "h", "w", 3],
                  "meaning": "sRGB photos; colour inputs count only through their luminance"}],
      "outputs": [{"name": "rgb", "dtype": "uint8", "shape": ["b", "h", "w", 3],
                   "meaning": "the input's L with the model's ab, upsampled to (h, w)"}],
      "render_size": colorizer.render_size,
      "hints": bool(getattr(colorizer, "takes_hints", False)),
      "step": colorizer.step,
      "generator": colorizer.config.model.generator,
      "platforms": list(exported.platforms),
      "jax_version": jax.__version__,
      "calling_convention_version": exported.calling_convention_version,
      "load": "colorjax.export.load_stablehlo(path), or "
              "jax.export.deserialize(bytearray(open(path, 'rb').read())).call(rgb)",
  }
  if signature["hints"]:
    size = colorizer.render_size
    signature["function"] = "colorize(rgb, hint_ab, hint_mask) -> rgb"
    signature["inputs"] += [
        {"name": "hint_ab", "dtype": "float32", "shape": ["b", size, size, 2],
         "meaning": "CIE a, b / 110 of the wanted colour where hinted, 0 elsewhere, at the "
                    "render size"},
        {"name": "hint_mask", "dtype": "float32", "shape": ["b", size, size, 1],
         "meaning": "1 where hinted, 0 elsewhere; all zeros: the automatic result"}]
  files.write_bytes(os.path.join(out_dir, SIGNATURE_FILE),
                json.dumps(signature, indent=2).encode())
  return exported


def load_stablehlo(path: str) -> Callable[[np.ndarray], jax.Array]:
  """A jitted callable from a `model.stablehlo` (or the folder holding it); needs only jax."""
  if os.path.isdir(path):
    path = os.path.join(path, STABLEHLO_FILE)
  with open(path, "rb") as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  return jax.jit(exported.call)


def export_savedmodel(colorizer: Any, out_dir: str) -> str:
  """Writes a TF SavedModel of the serving function (jax2tf) to `<out_dir>/savedmodel`."""
  from colorjax.core import tf_utils  # pylint: disable=g-import-not-at-top
  tf = tf_utils.import_tensorflow("the SavedModel export")  # The `tf` extra; off the GPUs.
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  tf_fn = jax2tf.convert(serving_function(colorizer), with_gradient=False,
                         polymorphic_shapes=[f"({INPUT_SHAPE})"])
  module = tf.Module()
  module.colorize = tf.function(
      tf_fn, autograph=False,
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="rgb")])
  path = os.path.join(out_dir, SAVEDMODEL_DIR)
  tf.saved_model.save(module, path, signatures={"serving_default": module.colorize})
  return path




COMMAND = cli.Command("python -m colorjax.export", __doc__, required=("workdir",))
_FLAGS = COMMAND.flags
flags.DEFINE_string("workdir", None, "training workdir (config.json + checkpoints/)",
                    flag_values=_FLAGS)
flags.DEFINE_enum("format", "all", ["stablehlo", "savedmodel", "all"],
                  "stablehlo: jax.export module (runs with jax alone); savedmodel: TF SavedModel "
                  "via jax2tf (needs TensorFlow); all: both", flag_values=_FLAGS)
flags.DEFINE_string("out", None, "output folder (None: <workdir>/export)", flag_values=_FLAGS)
flags.DEFINE_integer("size", None, "render size: the square side the model runs at (None: the "
                     "training size); input images may have any size", flag_values=_FLAGS)
flags.DEFINE_integer("step", None, "checkpoint step (None: the latest that loads)",
                     flag_values=_FLAGS)
flags.DEFINE_list("platforms", "cpu,cuda", "comma-separated StableHLO platforms, e.g. cpu,cuda",
                  flag_values=_FLAGS)


def _export(args: cli.Args) -> int:
  from colorjax.core import console  # pylint: disable=g-import-not-at-top
  console.quiet_libraries()  # Before TensorFlow or Orbax load.
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  from colorjax.core import checkpointing, tf_utils  # pylint: disable=g-import-not-at-top
  savedmodel = args.format in ("savedmodel", "all")
  if savedmodel and not tf_utils.tensorflow_available():
    # Without TF (the core install), --format=all is the StableHLO module alone.
    message = f"the SavedModel export needs TensorFlow: {tf_utils.INSTALL_HINT}"
    if args.format == "savedmodel":
      return errors.report(message)
    print(f"note: SavedModel skipped; {message}", file=sys.stderr)
    savedmodel = False
  try:
    colorizer = inference.Colorizer.from_workdir(args.workdir, args.step, args.size)
  except (FileNotFoundError, checkpointing.CheckpointError) as e:
    return errors.report(e)  # No usable or no fitting checkpoint: one line.
  out = args.out or os.path.join(args.workdir, "export")
  if args.format in ("stablehlo", "all"):
    export_stablehlo(colorizer, out, args.platforms)
    print(f"wrote {os.path.join(out, STABLEHLO_FILE)} and {SIGNATURE_FILE}")
  if savedmodel:
    print(f"wrote {export_savedmodel(colorizer, out)}")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.export` with `argv` (default: sys.argv[1:]); returns the exit code."""
  return COMMAND.run(_export, argv)


if __name__ == "__main__":
  sys.exit(main())
