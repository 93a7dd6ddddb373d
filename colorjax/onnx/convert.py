"""ONNX from any jitted JAX function of arrays: its jaxpr, op by op, written with `onnx.helper`.

  model = convert.to_onnx(fn, jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, h, w, 3"),
                                                   np.uint8), input_names=["rgb"])

Why a converter of our own: jax2onnx (the one maintained JAX -> ONNX converter) pins
`orbax-checkpoint<0.11.37` in its releases up to 0.17.1, which pip cannot install beside this
project's orbax, and it rejects the antialiased resize of the serving path; JAX -> TF -> tf2onnx
stops at the single `XlaCallModule` op jax2tf emits. The jaxpr is what `jax.export` lowers too,
so converting it keeps every generator, the pre- and post-processing and any extra input a
serving function takes without per-model code.

How it works:
* Closed-over arrays (the weights) are constants. Every equation whose inputs are all
  constants runs now, in JAX (BatchNorm's scale and shift, the convolution kernels' layout, index
  vectors): the graph keeps only the work that depends on the inputs.
* Shapes may be symbolic (`jax.export.symbolic_shape`): each dimension expression (e.g. `b`,
  `2*h`, `floordiv(w, 2)`) becomes int64 arithmetic on the inputs' `Shape`, so one graph takes
  any batch and image size, as the StableHLO export does.
* Nested jaxprs (jit, custom_jvp / custom_vjp calls, remat) are inlined; their differentiation
  rules do not matter for inference.
* Convolutions are NHWC in JAX and NCHW in ONNX: each becomes Transpose -> Conv -> Transpose,
  which ONNX Runtime's layout optimizer cancels between consecutive convolutions. Input-dilated
  convolutions (JAX's transposed convolutions) become ConvTranspose.
A primitive without a rule raises `NotImplementedError` naming it.

The parts: `graph` (the graph being written), `rules` (one per primitive), `rewrites` (peephole
rewrites of the written graph); this module walks the jaxpr and assembles the model.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax import extend as jex
import numpy as np
import onnx
from onnx import helper, numpy_helper

from colorjax.onnx import rewrites
from colorjax.onnx.graph import Const, Graph, is_static, onnx_dtype
from colorjax.onnx.rules import RULES

OPSET = 18  # Reduce* with axes as inputs; ONNX Runtime, TensorRT and onnx.js all read it.


# ------------------------------------------------------------------------------------------
# Walking the jaxpr.
# ------------------------------------------------------------------------------------------
_NESTED = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _nested_jaxpr(eqn: Any) -> Any | None:
  """The jaxpr of a call-like equation (jit, custom_jvp_call, custom_vjp_call, remat...)."""
  for key in _NESTED:
    inner = eqn.params.get(key)
    if isinstance(inner, jex.core.ClosedJaxpr):
      return inner
    if isinstance(inner, jex.core.Jaxpr):
      return jex.core.ClosedJaxpr(inner, ())
  return None


def _fold(eqn: Any, args: list[Any]) -> list[Const] | None:
  """Runs an equation whose inputs are all constants now; None if it cannot run here."""
  if not all(isinstance(a, Const) for a in args):
    return None
  if not all(is_static(v.aval.shape) for v in eqn.outvars) or _symbolic(eqn.params):
    return None
  with jax.default_device(jax.devices("cpu")[0]):
    out = eqn.primitive.bind(*[a.value for a in args], **eqn.params)
  out = out if eqn.primitive.multiple_results else [out]
  return [Const(np.asarray(o)) for o in out]


def _symbolic(params: Any) -> bool:
  """Whether equation parameters mention a symbolic dimension (dim_as_value, iota(h), ...)."""
  if isinstance(params, dict):
    return any(_symbolic(v) for v in params.values())
  if isinstance(params, (tuple, list)):
    return any(_symbolic(v) for v in params)
  return jax.export.is_symbolic_dim(params)


def _read(env: dict, var: Any) -> Any:
  if isinstance(var, jex.core.Literal):
    return Const(np.asarray(var.val, var.aval.dtype))
  return env[var]


def _walk(g: Graph, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
  env: dict[Any, Any] = {}
  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value if isinstance(value, (str, Const)) else Const(value)
  for var, value in zip(jaxpr.invars, args):
    env[var] = value
  for eqn in jaxpr.eqns:
    inputs = [_read(env, v) for v in eqn.invars]
    inner = _nested_jaxpr(eqn)
    if inner is not None:
      outputs = _walk(g, inner.jaxpr, inner.consts, inputs[len(inputs) - len(inner.jaxpr.invars):])
    else:
      outputs = _fold(eqn, inputs)
      if outputs is None:
        rule = RULES.get(eqn.primitive.name)
        if rule is None:
          raise NotImplementedError(f"no ONNX rule for the JAX primitive "
                                    f"{eqn.primitive.name!r}")
        outputs = rule(g, eqn, inputs)
    for var, value in zip(eqn.outvars, outputs):
      env[var] = value
  return [_read(env, v) for v in jaxpr.outvars]


# ------------------------------------------------------------------------------------------
# The model.
# ------------------------------------------------------------------------------------------
def _value_info(name: str, spec: Any) -> onnx.ValueInfoProto:
  shape = [d if isinstance(d, (int, np.integer)) else str(d) for d in spec.shape]
  return helper.make_tensor_value_info(name, onnx_dtype(spec.dtype), shape)


def to_onnx(fn: Callable[..., Any], *specs: jax.ShapeDtypeStruct,
            input_names: Sequence[str], output_names: Sequence[str] | None = None,
            doc: str = "", opset: int = OPSET) -> onnx.ModelProto:
  """The ONNX model of `fn` (arrays in, an array or a tuple of arrays out) for `specs`.

  Symbolic dimensions in `specs` (`jax.export.symbolic_shape`) stay dynamic in the graph under
  their names; arrays `fn` closes over become initializers.
  """
  closed = jax.make_jaxpr(fn)(*specs)
  g = Graph()
  for name, spec in zip(input_names, specs):
    for axis, d in enumerate(spec.shape):
      if not isinstance(d, (int, np.integer)) and str(d) not in g.dims:
        if not str(d).isidentifier():
          raise ValueError(f"input {name!r}: dimension {d} must be a plain variable")
        g.dims[str(d)] = g.node("Shape", [name], start=axis, end=axis + 1)
  outputs = _walk(g, closed.jaxpr, closed.consts, list(input_names))
  out_avals = [v.aval for v in closed.jaxpr.outvars]
  output_names = list(output_names or [f"output_{i}" for i in range(len(outputs))])
  for value, name in zip(outputs, output_names):
    g.nodes.append(helper.make_node("Identity", [g.name(value)], [name]))
  rewrites.optimize(g, output_names)
  initializers = [numpy_helper.from_array(array, name) for name, array in g.initializers.items()]
  graph = helper.make_graph(g.nodes, "colorjax", [_value_info(n, s) for n, s in
                                                  zip(input_names, specs)],
                            [_value_info(n, a) for n, a in zip(output_names, out_avals)],
                            initializers, doc_string=doc)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                            producer_name="colorjax", producer_version=jax.__version__)
  onnx.checker.check_model(model)
  return model
