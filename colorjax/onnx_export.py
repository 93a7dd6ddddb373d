"""ONNX from any jitted JAX function of arrays: its jaxpr, op by op, written with `onnx.helper`.

  model = onnx_export.to_onnx(fn, jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, h, w, 3"),
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
"""

from __future__ import annotations

import ast
from typing import Any, Callable, Sequence

import jax
from jax import extend as jex
import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 18  # Reduce* with axes as inputs; ONNX Runtime, TensorRT and onnx.js all read it.


class Const:
  """A value known at conversion time."""

  def __init__(self, value: Any):
    self.value = np.asarray(value)


def _onnx_dtype(dtype: Any) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _is_static(shape: Sequence[Any]) -> bool:
  return all(isinstance(d, (int, np.integer)) for d in shape)


# ------------------------------------------------------------------------------------------
# The graph being written.
# ------------------------------------------------------------------------------------------
class _Graph:
  """Nodes, initializers and the value of every jaxpr variable (an ONNX name or a Const)."""

  def __init__(self):
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: dict[str, np.ndarray] = {}
    self.dims: dict[str, str] = {}  # Dimension variable -> int64 [1] tensor name.
    self._dim_cache: dict[str, str] = {}
    self._count = 0

  def fresh(self, hint: str = "t") -> str:
    self._count += 1
    return f"{hint}_{self._count}"

  def node(self, op: str, inputs: Sequence[str], outputs: int = 1, **attrs) -> Any:
    names = [self.fresh(op.lower()) for _ in range(outputs)]
    self.nodes.append(helper.make_node(op, list(inputs), names, **attrs))
    return names[0] if outputs == 1 else names

  def constant(self, value: Any, dtype: Any = None) -> str:
    array = np.asarray(value, dtype)
    name = self.fresh("const")
    self.initializers[name] = array
    return name

  def name(self, value: Any) -> str:
    """The ONNX tensor name of a value, writing constants as initializers."""
    return self.constant(value.value) if isinstance(value, Const) else value

  # -- symbolic dimensions ----------------------------------------------------------------
  def dim(self, d: Any) -> str:
    """An int64 [1] tensor holding dimension `d` (an int or a symbolic expression)."""
    if isinstance(d, (int, np.integer)):
      return self.constant([int(d)], np.int64)
    key = str(d)
    if key not in self._dim_cache:
      self._dim_cache[key] = self._eval_dim(ast.parse(key, mode="eval").body, key)
    return self._dim_cache[key]

  def _eval_dim(self, tree: ast.AST, text: str) -> str:
    """Dimension expressions as `jax.export.symbolic_shape` prints and parses them."""
    if isinstance(tree, ast.Constant):
      return self.constant([int(tree.value)], np.int64)
    if isinstance(tree, ast.Name):
      if tree.id not in self.dims:
        raise NotImplementedError(f"dimension {tree.id!r} in {text!r} is not an input's dimension")
      return self.dims[tree.id]
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.USub):
      return self.node("Neg", [self._eval_dim(tree.operand, text)])
    binary = {ast.Add: "Add", ast.Sub: "Sub", ast.Mult: "Mul", ast.FloorDiv: "Div",
              ast.Mod: "Mod"}
    if isinstance(tree, ast.BinOp) and type(tree.op) in binary:
      return self.node(binary[type(tree.op)],
                       [self._eval_dim(tree.left, text), self._eval_dim(tree.right, text)])
    calls = {"floordiv": "Div", "mod": "Mod", "max": "Max", "min": "Min"}
    if isinstance(tree, ast.Call) and getattr(tree.func, "id", None) in calls:
      # Dimensions are positive here, so ONNX's truncating Div is floor division.
      return self.node(calls[tree.func.id], [self._eval_dim(a, text) for a in tree.args])
    raise NotImplementedError(f"dimension expression {text!r}")

  def shape(self, shape: Sequence[Any]) -> str:
    """An int64 1-D tensor holding `shape`."""
    if _is_static(shape):
      return self.constant([int(d) for d in shape], np.int64)
    return self.node("Concat", [self.dim(d) for d in shape], axis=0)


# ------------------------------------------------------------------------------------------
# Primitive rules: (graph, equation, input values) -> output names.
# ------------------------------------------------------------------------------------------
_RULES: dict[str, Callable[..., list[str]]] = {}


def _rule(*names: str):
  def register(fn):
    for name in names:
      _RULES[name] = fn
    return fn
  return register


def _elementwise(op: str):
  def rule(g: _Graph, eqn: Any, args: list[Any]) -> list[str]:
    return [g.node(op, [g.name(a) for a in args])]
  return rule


for _prim, _op in {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max",
                   "min": "Min", "pow": "Pow", "eq": "Equal", "gt": "Greater",
                   "ge": "GreaterOrEqual", "lt": "Less", "le": "LessOrEqual", "abs": "Abs",
                   "neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh",
                   "logistic": "Sigmoid", "sqrt": "Sqrt", "floor": "Floor", "ceil": "Ceil",
                   "sign": "Sign", "erf": "Erf", "sin": "Sin", "cos": "Cos"}.items():
  _RULES[_prim] = _elementwise(_op)


@_rule("copy", "copy_p", "optimization_barrier", "sharding_constraint", "stop_gradient",
       "reduce_precision")
def _identity(g, eqn, args):
  return [g.node("Identity", [g.name(a)]) for a in args]


@_rule("and", "or", "xor", "not")
def _logical(g, eqn, args):
  kind = eqn.primitive.name
  if np.dtype(eqn.outvars[0].aval.dtype) == np.bool_:
    op = {"and": "And", "or": "Or", "xor": "Xor", "not": "Not"}[kind]
  else:
    op = {"and": "BitwiseAnd", "or": "BitwiseOr", "xor": "BitwiseXor", "not": "BitwiseNot"}[kind]
  return [g.node(op, [g.name(a) for a in args])]


@_rule("ne")
def _not_equal(g, eqn, args):
  return [g.node("Not", [g.node("Equal", [g.name(a) for a in args])])]


@_rule("rsqrt")
def _rsqrt(g, eqn, args):
  return [g.node("Reciprocal", [g.node("Sqrt", [g.name(args[0])])])]


@_rule("cbrt")
def _cbrt(g, eqn, args):
  x = g.name(args[0])
  third = g.constant(1.0 / 3.0, eqn.outvars[0].aval.dtype)
  magnitude = g.node("Pow", [g.node("Abs", [x]), third])
  return [g.node("Mul", [g.node("Sign", [x]), magnitude])]


@_rule("integer_pow")
def _integer_pow(g, eqn, args):
  x, y = g.name(args[0]), eqn.params["y"]
  if y == 0:
    return [g.node("Add", [g.node("Mul", [x, g.constant(0, eqn.outvars[0].aval.dtype)]),
                           g.constant(1, eqn.outvars[0].aval.dtype)])]
  out = x
  for _ in range(abs(y) - 1):
    out = g.node("Mul", [out, x])
  return [g.node("Reciprocal", [out]) if y < 0 else out]


@_rule("square")
def _square(g, eqn, args):
  x = g.name(args[0])
  return [g.node("Mul", [x, x])]


@_rule("log1p")
def _log1p(g, eqn, args):
  one = g.constant(1, eqn.outvars[0].aval.dtype)
  return [g.node("Log", [g.node("Add", [g.name(args[0]), one])])]


@_rule("round")
def _round(g, eqn, args):
  x = g.name(args[0])
  if int(eqn.params["rounding_method"]) == 1:  # TO_NEAREST_EVEN, ONNX's Round.
    return [g.node("Round", [x])]
  half = g.constant(0.5, eqn.outvars[0].aval.dtype)  # AWAY_FROM_ZERO.
  return [g.node("Mul", [g.node("Sign", [x]),
                         g.node("Floor", [g.node("Add", [g.node("Abs", [x]), half])])])]


@_rule("convert_element_type")
def _convert(g, eqn, args):
  return [g.node("Cast", [g.name(args[0])], to=_onnx_dtype(eqn.params["new_dtype"]))]


@_rule("select_n")
def _select_n(g, eqn, args):
  predicate, cases = g.name(args[0]), [g.name(a) for a in args[1:]]
  if np.dtype(eqn.invars[0].aval.dtype) == np.bool_:
    return [g.node("Where", [predicate, cases[1], cases[0]])]
  out = cases[0]
  for index, case in enumerate(cases[1:], start=1):
    chosen = g.node("Equal", [predicate, g.constant(index, eqn.invars[0].aval.dtype)])
    out = g.node("Where", [chosen, case, out])
  return [out]


@_rule("clamp")
def _clamp(g, eqn, args):
  low, x, high = (g.name(a) for a in args)
  return [g.node("Max", [g.node("Min", [x, high]), low])]


@_rule("dim_as_value")
def _dim_as_value(g, eqn, args):
  value = g.node("Squeeze", [g.dim(eqn.params["dim"])])
  return [g.node("Cast", [value], to=_onnx_dtype(eqn.outvars[0].aval.dtype))]


@_rule("iota")
def _iota(g, eqn, args):
  shape, dimension = eqn.params["shape"], eqn.params["dimension"]
  dtype = np.dtype(eqn.params["dtype"])
  limit = g.node("Cast", [g.node("Squeeze", [g.dim(shape[dimension])])], to=_onnx_dtype(dtype))
  line = g.node("Range", [g.constant(0, dtype), limit, g.constant(1, dtype)])
  others = [axis for axis in range(len(shape)) if axis != dimension]
  if others:
    line = g.node("Unsqueeze", [line, g.constant(others, np.int64)])
  return [g.node("Expand", [line, g.shape(shape)])]


@_rule("broadcast_in_dim")
def _broadcast_in_dim(g, eqn, args):
  shape, kept = eqn.params["shape"], eqn.params["broadcast_dimensions"]
  x = g.name(args[0])
  new_axes = [axis for axis in range(len(shape)) if axis not in kept]
  if new_axes:
    x = g.node("Unsqueeze", [x, g.constant(new_axes, np.int64)])
  if tuple(eqn.invars[0].aval.shape) == tuple(
      shape[axis] for axis in range(len(shape)) if axis in kept) and all(
          shape[axis] == 1 for axis in new_axes):
    return [x]
  return [g.node("Expand", [x, g.shape(shape)])]


@_rule("reshape")
def _reshape(g, eqn, args):
  if eqn.params.get("dimensions") is not None:
    raise NotImplementedError("reshape with dimensions")
  return [g.node("Reshape", [g.name(args[0]), g.shape(eqn.params["new_sizes"])])]


@_rule("squeeze")
def _squeeze(g, eqn, args):
  return [g.node("Squeeze", [g.name(args[0]), g.constant(eqn.params["dimensions"], np.int64)])]


@_rule("expand_dims")
def _expand_dims(g, eqn, args):
  return [g.node("Unsqueeze", [g.name(args[0]), g.constant(eqn.params["dimensions"], np.int64)])]


@_rule("transpose")
def _transpose(g, eqn, args):
  return [g.node("Transpose", [g.name(args[0])], perm=list(eqn.params["permutation"]))]


@_rule("concatenate")
def _concatenate(g, eqn, args):
  return [g.node("Concat", [g.name(a) for a in args], axis=eqn.params["dimension"])]


@_rule("stack")
def _stack(g, eqn, args):
  axis = g.constant([eqn.params["axis"]], np.int64)
  return [g.node("Concat", [g.node("Unsqueeze", [g.name(a), axis]) for a in args],
                 axis=eqn.params["axis"])]


@_rule("split")
def _split(g, eqn, args):
  if len(eqn.outvars) == 1:
    return [g.node("Identity", [g.name(args[0])])]
  return g.node("Split", [g.name(args[0]), g.shape(eqn.params["sizes"])],
                outputs=len(eqn.outvars), axis=eqn.params["axis"])


@_rule("slice")
def _slice(g, eqn, args):
  starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
  strides = eqn.params["strides"] or (1,) * len(starts)
  axes = list(range(len(starts)))
  return [g.node("Slice", [g.name(args[0]), g.shape(starts), g.shape(limits),
                           g.constant(axes, np.int64), g.shape(strides)])]


@_rule("rev")
def _rev(g, eqn, args):
  axes = list(eqn.params["dimensions"])
  big = np.iinfo(np.int64)
  return [g.node("Slice", [g.name(args[0]), g.constant([-1] * len(axes), np.int64),
                           g.constant([big.min] * len(axes), np.int64),
                           g.constant(axes, np.int64), g.constant([-1] * len(axes), np.int64)])]


@_rule("pad")
def _pad(g, eqn, args):
  config = eqn.params["padding_config"]
  if any(interior for _, _, interior in config) or any(lo < 0 or hi < 0 for lo, hi, _ in config):
    raise NotImplementedError("pad with interior or negative padding")
  pads = [lo for lo, _, _ in config] + [hi for _, hi, _ in config]
  return [g.node("Pad", [g.name(args[0]), g.constant(pads, np.int64), g.name(args[1])])]


@_rule("gather")
def _gather(g, eqn, args):
  """The two gathers jnp emits for indexing: static indexing (x[..., 0], x[:, a:b]) as a Slice
  and a Squeeze, and one axis indexed by a vector (nearest-neighbour resize x[:, [0, 0, 1, 1]],
  strided slices over symbolic sizes) as an ONNX Gather on that axis."""
  operand, indices = args
  numbers = eqn.params["dimension_numbers"]
  if numbers.operand_batching_dims:
    raise NotImplementedError("gather with batching dimensions")
  out_rank = len(eqn.outvars[0].aval.shape)
  index_shape = eqn.invars[1].aval.shape
  if (isinstance(indices, Const) and indices.value.ndim == 1
      and tuple(numbers.offset_dims) == tuple(range(out_rank))):
    return [_static_index(g, operand, indices.value, numbers, eqn.params["slice_sizes"])]
  axis = numbers.start_index_map[0]
  batch_axes = [a for a in range(out_rank) if a not in numbers.offset_dims]
  if (len(index_shape) == 2 and index_shape[1] == 1 and len(numbers.start_index_map) == 1
      and tuple(numbers.collapsed_slice_dims) == (axis,) and batch_axes == [axis]
      and eqn.params["slice_sizes"][axis] == 1):
    if isinstance(indices, Const):
      vector = g.constant(indices.value[:, 0].astype(np.int64))
    else:
      vector = g.node("Squeeze", [indices, g.constant([1], np.int64)])
    return [g.node("Gather", [g.name(operand), vector], axis=axis)]
  raise NotImplementedError(f"gather of this form: {numbers}")


def _static_index(g: _Graph, operand: Any, starts_at: np.ndarray, numbers: Any,
                  slice_sizes: Sequence[Any]) -> str:
  starts = dict(zip(numbers.start_index_map, starts_at.tolist()))
  axes = sorted(starts)
  begin = [starts[a] for a in axes]
  end = [starts[a] + slice_sizes[a] for a in axes]
  x = g.node("Slice", [g.name(operand), g.constant(begin, np.int64), g.constant(end, np.int64),
                       g.constant(axes, np.int64)])
  if numbers.collapsed_slice_dims:
    x = g.node("Squeeze", [x, g.constant(list(numbers.collapsed_slice_dims), np.int64)])
  return x


@_rule("reduce_sum", "reduce_max", "reduce_min", "reduce_prod")
def _reduce(g, eqn, args):
  op = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin",
        "reduce_prod": "ReduceProd"}[eqn.primitive.name]
  axes = g.constant(list(eqn.params["axes"]), np.int64)
  return [g.node(op, [g.name(args[0]), axes], keepdims=0)]


@_rule("argmax", "argmin")
def _argmax(g, eqn, args):
  (axis,) = eqn.params["axes"]
  op = "ArgMax" if eqn.primitive.name == "argmax" else "ArgMin"
  index = g.node(op, [g.name(args[0])], axis=axis, keepdims=0)
  return [g.node("Cast", [index], to=_onnx_dtype(eqn.params["index_dtype"]))]


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@_rule("dot_general")
def _dot_general(g, eqn, args):
  """Einsum: batch dimensions first, then the lhs's free dimensions, then the rhs's."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs_rank, rhs_rank = (len(v.aval.shape) for v in eqn.invars)
  letters = iter(_LETTERS)
  lhs = [next(letters) for _ in range(lhs_rank)]
  rhs = [None] * rhs_rank
  for l_axis, r_axis in zip(list(lhs_contract) + list(lhs_batch),
                            list(rhs_contract) + list(rhs_batch)):
    rhs[r_axis] = lhs[l_axis]
  rhs = [letter or next(letters) for letter in rhs]
  out = ([lhs[a] for a in lhs_batch]
         + [lhs[a] for a in range(lhs_rank) if a not in lhs_contract and a not in lhs_batch]
         + [rhs[a] for a in range(rhs_rank) if a not in rhs_contract and a not in rhs_batch])
  equation = f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"
  operands = [g.name(a) for a in args]
  out_dtype = np.dtype(eqn.outvars[0].aval.dtype)
  operands = [o if np.dtype(v.aval.dtype) == out_dtype else
              g.node("Cast", [o], to=_onnx_dtype(out_dtype)) for o, v in zip(operands, eqn.invars)]
  return [g.node("Einsum", operands, equation=equation)]


@_rule("conv_general_dilated")
def _conv(g, eqn, args):
  """Transpose to NCHW / OIHW, Conv (or ConvTranspose for input dilation), transpose back."""
  p = eqn.params
  if p["batch_group_count"] != 1:
    raise NotImplementedError("convolution with batch_group_count > 1")
  numbers = p["dimension_numbers"]
  lhs_spec, rhs_spec, out_spec = numbers.lhs_spec, numbers.rhs_spec, numbers.out_spec
  lhs, rhs = args
  x = g.node("Transpose", [g.name(lhs)], perm=list(lhs_spec))
  if not isinstance(rhs, Const):
    raise NotImplementedError("convolution with a kernel computed from the inputs")
  kernel = np.transpose(rhs.value, rhs_spec)  # (O, I / groups, kh, kw).
  groups = p["feature_group_count"]
  if all(d == 1 for d in p["lhs_dilation"]):
    y = g.node("Conv", [x, g.constant(kernel)], strides=list(p["window_strides"]),
               dilations=list(p["rhs_dilation"]),
               pads=[lo for lo, _ in p["padding"]] + [hi for _, hi in p["padding"]],
               group=groups)
  else:
    y = _input_dilated_conv(g, x, kernel, p, groups)
  inverse = list(np.argsort(out_spec))
  return [g.node("Transpose", [y], perm=inverse)]


def _input_dilated_conv(g: _Graph, x: str, kernel: np.ndarray, p: dict, groups: int) -> str:
  """A convolution of the input dilated by s (zeros between its pixels), padded (lo, hi), is
  ConvTranspose with stride s over the spatially flipped kernel, I and O swapped, and pads
  (k - 1 - lo, k - 1 - hi) for the dilated kernel's extent k."""
  if any(s != 1 for s in p["window_strides"]) or groups != 1:
    raise NotImplementedError("input-dilated convolution with window strides or groups")
  dilation = p["rhs_dilation"]
  extent = [(k - 1) * d + 1 for k, d in zip(kernel.shape[2:], dilation)]
  pads = ([e - 1 - lo for e, (lo, _) in zip(extent, p["padding"])]
          + [e - 1 - hi for e, (_, hi) in zip(extent, p["padding"])])
  # Padding past the kernel's extent at the end (VALID with stride > kernel) adds output rows
  # that only read zeros: ConvTranspose's output_padding.
  spatial = len(extent)
  output_padding = [max(0, -pad) for pad in pads[spatial:]]
  pads = pads[:spatial] + [max(0, pad) for pad in pads[spatial:]]
  if min(pads) < 0:
    raise NotImplementedError("input-dilated convolution padded beyond the kernel's extent")
  flipped = np.ascontiguousarray(np.flip(kernel, axis=(2, 3)).transpose(1, 0, 2, 3))
  return g.node("ConvTranspose", [x, g.constant(flipped)], strides=list(p["lhs_dilation"]),
                dilations=list(dilation), pads=pads, output_padding=output_padding)


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
  if not all(_is_static(v.aval.shape) for v in eqn.outvars) or _symbolic(eqn.params):
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


def _walk(g: _Graph, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
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
        rule = _RULES.get(eqn.primitive.name)
        if rule is None:
          raise NotImplementedError(f"no ONNX rule for the JAX primitive "
                                    f"{eqn.primitive.name!r}")
        outputs = rule(g, eqn, inputs)
    for var, value in zip(eqn.outvars, outputs):
      env[var] = value
  return [_read(env, v) for v in jaxpr.outvars]


# ------------------------------------------------------------------------------------------
# Peephole rewrites of the written graph (what a model's layers become, written as ONNX has them).
# ------------------------------------------------------------------------------------------
def _attr(node: onnx.NodeProto, name: str) -> Any:
  for attribute in node.attribute:
    if attribute.name == name:
      return helper.get_attribute_value(attribute)
  return None


class _Rewriter:
  """The node list with its producers and consumers, rebuilt after each rewrite."""

  def __init__(self, g: _Graph, outputs: Sequence[str]):
    self.g, self.outputs = g, set(outputs)
    self.index()

  def index(self) -> None:
    self.producer = {out: n for n in self.g.nodes for out in n.output}
    self.consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in self.g.nodes:
      for name in n.input:
        self.consumers.setdefault(name, []).append(n)

  def const(self, name: str) -> np.ndarray | None:
    return self.g.initializers.get(name)

  def only_use(self, name: str) -> bool:
    return name not in self.outputs and len(self.consumers.get(name, [])) == 1

  def made_by(self, name: str, op: str) -> onnx.NodeProto | None:
    node = self.producer.get(name)
    return node if node is not None and node.op_type == op else None

  def replace(self, old: onnx.NodeProto, new: Sequence[onnx.NodeProto]) -> None:
    position = self.g.nodes.index(old)
    self.g.nodes[position:position + 1] = list(new)


def _scalar(array: np.ndarray | None) -> float | None:
  if array is None or array.size != 1 or not np.issubdtype(array.dtype, np.floating):
    return None
  return float(array.reshape(()))


def _activations(r: _Rewriter) -> bool:
  """max(x, 0) -> Relu; where(x >= 0, x, a * x) -> LeakyRelu(a): one pass instead of three, and
  ONNX Runtime fuses them into the convolution before."""
  for node in list(r.g.nodes):
    if node.op_type == "Max" and len(node.input) == 2:
      for x, zero in (node.input, node.input[::-1]):
        if _scalar(r.const(zero)) == 0.0:
          r.replace(node, [helper.make_node("Relu", [x], list(node.output))])
          return True
    if node.op_type == "Where":
      condition, x, scaled = node.input
      test = r.made_by(condition, "GreaterOrEqual") or r.made_by(condition, "Greater")
      product = r.made_by(scaled, "Mul")
      if test is None or product is None or test.input[0] != x:
        continue
      if _scalar(r.const(test.input[1])) != 0.0 or x not in product.input:
        continue
      slope = _scalar(r.const([i for i in product.input if i != x][0]))
      if slope is not None and 0 <= slope < 1:
        r.replace(node, [helper.make_node("LeakyRelu", [x], list(node.output), alpha=slope)])
        return True
  return False


def _channel_vector(array: np.ndarray | None, channels: int, axis: int, rank: int
                    ) -> np.ndarray | None:
  """`array` as a (channels,) vector if it broadcasts along `axis` of a rank-`rank` tensor only."""
  if array is None or array.ndim > rank:
    return None
  shape = (1,) * (rank - array.ndim) + array.shape
  if any(d != 1 for a, d in enumerate(shape) if a != axis):
    return None
  return np.broadcast_to(array.reshape(-1), (channels,)) if shape[axis] in (1, channels) else None


def _fold_affine_into_conv(r: _Rewriter) -> bool:
  """Conv -> Transpose -> {Add, Sub, Mul, Div} by a per-channel constant (BatchNorm in inference
  mode, a bias) becomes the Conv alone with its kernel and bias changed."""
  for node in list(r.g.nodes):
    if node.op_type not in ("Add", "Sub", "Mul", "Div"):
      continue
    for position, name in enumerate(node.input):
      layout = r.made_by(name, "Transpose")
      conv = layout and r.made_by(layout.input[0], "Conv")
      if conv is None or not (r.only_use(name) and r.only_use(layout.input[0])):
        continue
      kernel = r.const(conv.input[1])
      perm = _attr(layout, "perm")
      other = node.input[1 - position]
      channels = kernel.shape[0]
      vector = _channel_vector(r.const(other), channels, list(perm).index(1), len(perm))
      if vector is None or (position == 1 and node.op_type == "Div"):
        continue
      bias = r.const(conv.input[2]) if len(conv.input) > 2 else np.zeros(channels, kernel.dtype)
      kernel, bias = _affine(node.op_type, position, kernel, bias, vector)
      new_conv = helper.make_node("Conv", [conv.input[0], r.g.constant(kernel),
                                           r.g.constant(bias)], list(conv.output))
      new_conv.attribute.extend(conv.attribute)
      r.replace(conv, [new_conv])
      r.replace(node, [])
      r.replace(layout, [helper.make_node("Transpose", [layout.input[0]], list(node.output),
                                          perm=perm)])
      return True
  return False


def _affine(op: str, position: int, kernel: np.ndarray, bias: np.ndarray,
            c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Kernel (O, I, kh, kw) and bias (O,) of conv(x) `op` c (position 0) or c `op` conv(x)."""
  scale = c.reshape(-1, 1, 1, 1).astype(kernel.dtype)
  if op == "Add":
    return kernel, bias + c
  if op == "Sub":
    return (kernel, bias - c) if position == 0 else (-kernel, c - bias)
  if op == "Mul":
    return kernel * scale, bias * c
  return kernel / scale, bias / c


def _drop_dead(r: _Rewriter) -> None:
  """Removes nodes nothing reads, then initializers nothing reads."""
  needed, kept = set(r.outputs), []
  for node in reversed(r.g.nodes):
    if any(out in needed for out in node.output):
      kept.append(node)
      needed.update(node.input)
  r.g.nodes[:] = kept[::-1]
  r.g.initializers = {k: v for k, v in r.g.initializers.items() if k in needed}


def _optimize(g: _Graph, outputs: Sequence[str]) -> None:
  r = _Rewriter(g, outputs)
  while True:
    _drop_dead(r)
    r.index()
    if not (_activations(r) or _fold_affine_into_conv(r)):
      return


def _value_info(name: str, spec: Any) -> onnx.ValueInfoProto:
  shape = [d if isinstance(d, (int, np.integer)) else str(d) for d in spec.shape]
  return helper.make_tensor_value_info(name, _onnx_dtype(spec.dtype), shape)


def to_onnx(fn: Callable[..., Any], *specs: jax.ShapeDtypeStruct,
            input_names: Sequence[str], output_names: Sequence[str] | None = None,
            doc: str = "", opset: int = OPSET) -> onnx.ModelProto:
  """The ONNX model of `fn` (arrays in, an array or a tuple of arrays out) for `specs`.

  Symbolic dimensions in `specs` (`jax.export.symbolic_shape`) stay dynamic in the graph under
  their names; arrays `fn` closes over become initializers.
  """
  closed = jax.make_jaxpr(fn)(*specs)
  g = _Graph()
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
  _optimize(g, output_names)
  initializers = [numpy_helper.from_array(array, name) for name, array in g.initializers.items()]
  graph = helper.make_graph(g.nodes, "colorjax", [_value_info(n, s) for n, s in
                                                  zip(input_names, specs)],
                            [_value_info(n, a) for n, a in zip(output_names, out_avals)],
                            initializers, doc_string=doc)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                            producer_name="colorjax", producer_version=jax.__version__)
  onnx.checker.check_model(model)
  return model
