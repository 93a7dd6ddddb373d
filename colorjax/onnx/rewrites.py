"""Peephole rewrites of the written graph: what a model's layers become, written as ONNX has
them (Relu and LeakyRelu nodes; BatchNorm and biases folded into the convolution before them),
and the nodes and initializers nothing reads dropped."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper

from colorjax.onnx.graph import Graph


def _attr(node: onnx.NodeProto, name: str) -> Any:
  for attribute in node.attribute:
    if attribute.name == name:
      return helper.get_attribute_value(attribute)
  return None


class _Rewriter:
  """The node list with its producers and consumers, rebuilt after each rewrite."""

  def __init__(self, g: Graph, outputs: Sequence[str]):
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


def optimize(g: Graph, outputs: Sequence[str]) -> None:
  r = _Rewriter(g, outputs)
  while True:
    _drop_dead(r)
    r.index()
    if not (_activations(r) or _fold_affine_into_conv(r)):
      return
