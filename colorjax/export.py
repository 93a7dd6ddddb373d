"""Export a trained colorizer for serving without colorjax: StableHLO, ONNX, TF SavedModel.

  python -m colorjax.export --workdir=runs/lsgan --format=all [--out=runs/lsgan/export]

The serving signature (every format) is the whole colorize path of `colorjax.inference`:

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
  * `model.onnx`: ONNX (opset 18) of the same function (input "rgb", output "colorized"),
    written by `colorjax.onnx.convert` from its jaxpr; runs in ONNX Runtime (CPU, CUDA,
    TensorRT, the web and mobile builds) with no Python at all. Needs the `onnx` extra to
    write; without it, --format=all skips it.
  * `savedmodel/`: TF SavedModel from `jax2tf` with a `serving_default` signature
    (input "rgb", output "output_0"), loadable with `tf.saved_model.load`. Needs TensorFlow
    (the `tf` extra); without it, --format=all writes the StableHLO files alone.

This module imports jax, numpy, absl's flags, the standard library and light colorjax modules
(no model code, not `colorjax.inference`) at the top, so that `load_stablehlo` works in a process
that has no colorjax model code loaded.

Hints: the ONNX graph is the jaxpr of `serving_function`, so a serving function that takes
more inputs (e.g. user colour hints) gets them as further ONNX inputs once `onnx_serving`
passes their specs and names.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from typing import Any, Callable, Iterator, Sequence

from absl import flags
import jax
from jax import export as jax_export
from jax._src import xla_bridge
from jax._src.export import _export as export_internals
from jax._src.lib import _jax
from jaxlib.mlir.dialects import stablehlo
import numpy as np

from colorjax.color import hints
from colorjax.core import cli
from colorjax.core import console
from colorjax.core import errors
from colorjax.core import files
from colorjax.core import tf_utils

STABLEHLO_FILE = "model.stablehlo"
SIGNATURE_FILE = "signature.json"
SAVEDMODEL_DIR = "savedmodel"
ONNX_FILE = "model.onnx"
INPUT_SHAPE = "b, h, w, 3"  # Symbolic batch, height and width.
ONNX_INPUT, ONNX_OUTPUT = "rgb", "colorized"
GENERATOR_INPUT, GENERATOR_OUTPUT = "l_norm", "ab_norm"
ONNX_INSTALL_HINT = "pip install 'colorjax[onnx]'"


def serving_function(colorizer: Any) -> Callable[[jax.Array], jax.Array]:
  """uint8 RGB (b, h, w, 3) -> colorized uint8 RGB (b, h, w, 3), weights closed over."""
  # (a) Not at the top, a tested promise (test_stablehlo_loads_without_colorjax_model_code):
  # a process that only calls load_stablehlo never loads colorjax.inference (~35 ms).
  from colorjax import inference  # pylint: disable=g-import-not-at-top
  render_size, variables = colorizer.render_size, colorizer.variables

  def colorize(rgb: jax.Array) -> jax.Array:
    l_full, l_render = inference.prepare(rgb, render_size)
    if getattr(colorizer, "takes_hints", False):  # A hint model, run without hints.
      l_render = hints.automatic_input(l_render)
    ab = inference.apply_generator(colorizer.generator, colorizer.decode, variables, l_render)
    return inference.finish(rgb, l_full, ab)
  return colorize


def hint_serving_function(colorizer: Any) -> Callable[..., jax.Array]:
  """`serving_function` of a hint model: (rgb, hint_ab (b, R, R, 2), hint_mask (b, R, R, 1))
  -> colorized uint8 RGB (b, h, w, 3)."""
  from colorjax import inference  # pylint: disable=g-import-not-at-top  (a): serving_function.
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
  """The serving function exported for `platforms`, with XLA's convolutions.

  The convolution implementation is chosen for inference on the target platforms, not for the
  host doing the export (`inference.inference_conv`): XLA's own convolution everywhere, the
  CPU included, where im2col only pays for gradients. The weights are the same either way.
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


def onnx_available() -> bool:
  return importlib.util.find_spec("onnx") is not None


def _onnx_metadata(model: Any, colorizer: Any) -> Any:
  import onnx  # pylint: disable=g-import-not-at-top  (b): the onnx extra.
  onnx.helper.set_model_props(model, {
      "render_size": str(colorizer.render_size), "step": str(colorizer.step),
      "generator": str(colorizer.config.model.generator)})
  return model


def onnx_serving(colorizer: Any) -> Any:
  """The serving function as an `onnx.ModelProto`: uint8 "rgb" (b, h, w, 3) -> uint8
  "colorized" (b, h, w, 3), b, h and w dynamic; a hint model also takes float32 "hint_ab"
  (b, R, R, 2) and "hint_mask" (b, R, R, 1), as the StableHLO export does.

  Convolutions are XLA's (`conv="xla"`): they become ONNX Conv nodes, which every runtime
  optimises; im2col's patch matrices would be a slower graph of slices and a MatMul.
  """
  from colorjax.onnx import convert  # pylint: disable=g-import-not-at-top  (b): onnx extra.
  colorizer = colorizer.with_conv("xla")
  if getattr(colorizer, "takes_hints", False):  # Zhang et al. 2017's hint map and mask too.
    function, names = hint_serving_function(colorizer), [ONNX_INPUT, "hint_ab", "hint_mask"]
    doc = ("colorize(rgb, hint_ab, hint_mask) -> rgb: uint8 sRGB photos and the user's hints "
           "at the render size (signature.json's hint_ab, hint_mask) in, the input's L with the "
           "model's ab out (colorjax.export)")
  else:
    function, names = serving_function(colorizer), [ONNX_INPUT]
    doc = ("colorize(rgb) -> rgb: uint8 sRGB photos in, the input's L with the model's ab out "
           "(colorjax.export)")
  model = convert.to_onnx(function, *_input_specs(colorizer), input_names=names,
                          output_names=[ONNX_OUTPUT], doc=doc)
  return _onnx_metadata(model, colorizer)


def onnx_generator(colorizer: Any) -> Any:
  """The generator and its decoding as an `onnx.ModelProto`: float32 "l_norm"
  (b, R, R, C) -> "ab_norm" (b, R, R, 2), R the render size, b dynamic (the onnxruntime
  backend of `inference.Colorizer`). C is 1, or 4 for a model trained with hints: L, the hint
  ab and the hint mask (`color.hints.generator_input`)."""
  from colorjax import inference  # pylint: disable=g-import-not-at-top  (a): serving_function.
  from colorjax.onnx import convert  # pylint: disable=g-import-not-at-top  (b): onnx extra.
  colorizer = colorizer.with_conv("xla")
  size, channels = colorizer.render_size, hints.input_channels(colorizer.config)

  def generator(l_norm: jax.Array) -> jax.Array:
    return inference.apply_generator(colorizer.generator, colorizer.decode, colorizer.variables,
                                     l_norm)
  spec = jax.ShapeDtypeStruct(jax_export.symbolic_shape(f"b, {size}, {size}, {channels}"),
                              np.float32)
  model = convert.to_onnx(generator, spec, input_names=[GENERATOR_INPUT],
                          output_names=[GENERATOR_OUTPUT])
  return _onnx_metadata(model, colorizer)


def export_onnx(colorizer: Any, out_dir: str) -> str:
  """Writes `model.onnx` (`onnx_serving`) into `out_dir`; returns its path."""
  path = os.path.join(out_dir, ONNX_FILE)
  os.makedirs(out_dir, exist_ok=True)
  files.write_bytes(path, onnx_serving(colorizer).SerializeToString())
  return path


@contextlib.contextmanager
def _stablehlo_readable_by_tensorflow() -> Iterator[None]:
  """jax.export's StableHLO written in a version the installed TensorFlow reads.

  jax serializes for consumers at most 4 weeks older than itself (StableHLO 1.22 for jax
  0.12.1), while TF 2.21's XlaCallModule reads up to 1.13.7 and rejects newer operations
  (`vhlo.custom_call_v2`). StableHLO's portable artifacts can target an older version, so
  while the SavedModel is traced, jax's serializer (a private function: `jax._src.export.
  _export._module_to_bytecode`, checked for at run time) targets the smaller of the two.
  """
  try:
    # (b) TensorFlow, the `tf` extra; without it jax's own choice stands.
    # pylint: disable-next=g-import-not-at-top
    from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo
    tf_version = tf_stablehlo.get_current_version()
  except (ImportError, AttributeError):
    tf_version = None
  original = getattr(export_internals, "_module_to_bytecode", None)
  if tf_version is None or original is None:
    yield  # Nothing known to adapt to: jax's own choice.
    return
  jax_version = stablehlo.get_version_from_compatibility_requirement(
      stablehlo.StablehloCompatibilityRequirement.WEEK_4)
  target = stablehlo.get_smaller_version(jax_version, tf_version)

  def to_bytecode(module):
    return _jax.mlir.serialize_portable_artifact(
        module, target, xla_bridge.get_backend().serialize_with_sdy)

  export_internals._module_to_bytecode = to_bytecode  # pylint: disable=protected-access
  try:
    yield
  finally:
    export_internals._module_to_bytecode = original  # pylint: disable=protected-access


def export_savedmodel(colorizer: Any, out_dir: str) -> str:
  """Writes a TF SavedModel of the serving function (jax2tf) to `<out_dir>/savedmodel`."""
  tf = tf_utils.import_tensorflow("the SavedModel export")  # The `tf` extra; off the GPUs.
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top  (b): imports TF.

  tf_fn = jax2tf.convert(serving_function(colorizer), with_gradient=False,
                         polymorphic_shapes=[f"({INPUT_SHAPE})"])
  module = tf.Module()
  module.colorize = tf.function(
      tf_fn, autograph=False,
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="rgb")])
  path = os.path.join(out_dir, SAVEDMODEL_DIR)
  with _stablehlo_readable_by_tensorflow():  # Tracing (in save) serializes the StableHLO.
    tf.saved_model.save(module, path, signatures={"serving_default": module.colorize})
  return path


COMMAND = cli.Command("python -m colorjax.export", __doc__, required=("workdir",))
_FLAGS = COMMAND.flags
flags.DEFINE_string("workdir", None, "training workdir (config.json + checkpoints/)",
                    flag_values=_FLAGS)
flags.DEFINE_enum("format", "all", ["stablehlo", "onnx", "savedmodel", "all"],
                  "stablehlo: jax.export module (runs with jax alone); onnx: ONNX model (needs "
                  "the onnx extra to write; runs in ONNX Runtime); savedmodel: TF SavedModel "
                  "via jax2tf (needs TensorFlow); all: every one whose extra is installed",
                  flag_values=_FLAGS)
flags.DEFINE_string("out", None, "output folder (None: <workdir>/export)", flag_values=_FLAGS)
flags.DEFINE_integer("size", None, "render size: the square side the model runs at (None: the "
                     "training size); input images may have any size", flag_values=_FLAGS)
flags.DEFINE_integer("step", None, "checkpoint step (None: the latest that loads)",
                     flag_values=_FLAGS)
flags.DEFINE_list("platforms", "cpu,cuda", "comma-separated StableHLO platforms, e.g. cpu,cuda",
                  flag_values=_FLAGS)


def _export(args: cli.Args) -> int:
  console.quiet_libraries()  # Before TensorFlow or Orbax load.
  # (a) Orbax (~250 ms) stays out of `import colorjax.export`, which load_stablehlo needs, and
  # loads after quiet_libraries above; inference as in serving_function.
  # pylint: disable=g-import-not-at-top
  from colorjax import inference
  from colorjax.core import checkpointing
  # pylint: enable=g-import-not-at-top
  savedmodel = args.format in ("savedmodel", "all")
  if savedmodel and not tf_utils.tensorflow_available():
    # Without TF (the core install), --format=all is the StableHLO module alone.
    message = f"the SavedModel export needs TensorFlow: {tf_utils.INSTALL_HINT}"
    if args.format == "savedmodel":
      return errors.report(message)
    print(f"note: SavedModel skipped; {message}", file=sys.stderr)
    savedmodel = False
  write_onnx = args.format in ("onnx", "all")
  if write_onnx and not onnx_available():
    message = f"the ONNX export needs the onnx package: {ONNX_INSTALL_HINT}"
    if args.format == "onnx":
      return errors.report(message)
    print(f"note: ONNX skipped; {message}", file=sys.stderr)
    write_onnx = False
  try:
    colorizer = inference.Colorizer.from_workdir(args.workdir, args.step, args.size)
  except (FileNotFoundError, checkpointing.CheckpointError) as e:
    return errors.report(e)  # No usable or no fitting checkpoint: one line.
  out = args.out or os.path.join(args.workdir, "export")
  if args.format in ("stablehlo", "all"):
    export_stablehlo(colorizer, out, args.platforms)
    print(f"wrote {os.path.join(out, STABLEHLO_FILE)} and {SIGNATURE_FILE}")
  if write_onnx:
    try:
      print(f"wrote {export_onnx(colorizer, out)}")
    except NotImplementedError as e:  # The converter's bounds (colorjax/onnx/rules.py).
      return errors.report(f"the ONNX export cannot write this model ({e}); "
                           "--format=stablehlo exports every model", code=1)
  if savedmodel:
    print(f"wrote {export_savedmodel(colorizer, out)}")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.export` with `argv` (default: sys.argv[1:]); returns the exit code."""
  return COMMAND.run(_export, argv)


if __name__ == "__main__":
  sys.exit(main())
