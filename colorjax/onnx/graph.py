"""The ONNX graph being written: nodes, initializers, and the int64 tensors of the symbolic
dimensions (`jax.export.symbolic_shape`) that shapes are computed from."""

from __future__ import annotations

import ast
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper


class Const:
  """A value known at conversion time."""

  def __init__(self, value: Any):
    self.value = np.asarray(value)


def onnx_dtype(dtype: Any) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def is_static(shape: Sequence[Any]) -> bool:
  return all(isinstance(d, (int, np.integer)) for d in shape)


class Graph:
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
    if is_static(shape):
      return self.constant([int(d) for d in shape], np.int64)
    return self.node("Concat", [self.dim(d) for d in shape], axis=0)
