"""Primitive rules: (graph, equation, input values) -> output names, one per JAX primitive.

`RULES` maps a primitive's name to its rule; `colorjax.onnx.convert` looks each equation up there.
A rule receives the input values as ONNX tensor names or `Const`s (known at conversion time).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from colorjax.onnx.graph import Const, Graph, onnx_dtype

RULES: dict[str, Callable[..., list[str]]] = {}


def _rule(*names: str):
  def register(fn):
    for name in names:
      RULES[name] = fn
    return fn
  return register


def _elementwise(op: str):
  def rule(g: Graph, eqn: Any, args: list[Any]) -> list[str]:
    return [g.node(op, [g.name(a) for a in args])]
  return rule


for _prim, _op in {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max",
                   "min": "Min", "pow": "Pow", "eq": "Equal", "gt": "Greater",
                   "ge": "GreaterOrEqual", "lt": "Less", "le": "LessOrEqual", "abs": "Abs",
                   "neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh",
                   "logistic": "Sigmoid", "sqrt": "Sqrt", "floor": "Floor", "ceil": "Ceil",
                   "sign": "Sign", "erf": "Erf", "sin": "Sin", "cos": "Cos"}.items():
  RULES[_prim] = _elementwise(_op)


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
  return [g.node("Cast", [g.name(args[0])], to=onnx_dtype(eqn.params["new_dtype"]))]


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
  return [g.node("Cast", [value], to=onnx_dtype(eqn.outvars[0].aval.dtype))]


@_rule("iota")
def _iota(g, eqn, args):
  shape, dimension = eqn.params["shape"], eqn.params["dimension"]
  dtype = np.dtype(eqn.params["dtype"])
  limit = g.node("Cast", [g.node("Squeeze", [g.dim(shape[dimension])])], to=onnx_dtype(dtype))
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


def _static_index(g: Graph, operand: Any, starts_at: np.ndarray, numbers: Any,
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
  return [g.node("Cast", [index], to=onnx_dtype(eqn.params["index_dtype"]))]


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
              g.node("Cast", [o], to=onnx_dtype(out_dtype)) for o, v in zip(operands, eqn.invars)]
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


def _input_dilated_conv(g: Graph, x: str, kernel: np.ndarray, p: dict, groups: int) -> str:
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
