"""Which arrays a checkpoint holds, and whether they fit the model the config builds: flat
{path: shape} views of a state (`flat_shapes`), their differences listed for a person
(`tree_differences`), and `Subtrees`, the parts of a state that a reader restores alone.

Pure tree code on shapes: no Orbax, nothing read from disk (`checkpointing.saved_shapes` reads a
checkpoint's tree).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax

_MAX_LISTED_KEYS = 6


@dataclasses.dataclass(frozen=True)
class Subtrees:
  """Parts of the saved state to restore alone, by path: {path: abstract subtree}.

  For example {"ema": variables} (the generator's moving average) or
  {"g/params": params, "g/batch_stats": stats} (its raw weights), each a tree of
  ShapeDtypeStructs with shardings. Only these arrays are read; everything else in the
  checkpoint (optimizer states, the discriminator) is skipped. Each part is checked whole: a
  key missing under it, an extra one or a reshaped one is a
  `checkpointing.CheckpointMismatchError`. Restoring returns {path: restored subtree} with the
  same paths.
  """
  parts: Mapping[str, Any]

  def nested(self) -> dict[str, Any]:
    """The parts as one nested dict in the saved state's layout ({"g": {"params": ...}})."""
    tree: dict[str, Any] = {}
    for path, subtree in self.parts.items():
      *parents, last = path.split("/")
      node = tree
      for key in parents:
        node = node.setdefault(key, {})
      node[last] = subtree
    return tree

  def pick(self, nested: Mapping[str, Any]) -> dict[str, Any]:
    """{path: subtree} out of a nested dict laid out like `nested()`."""
    picked = {}
    for path in self.parts:
      node = nested
      for key in path.split("/"):
        node = node[key]
      picked[path] = node
    return picked

  def covers(self, key: str) -> bool:
    """Whether the flat key ("ema/params/down0/kernel") lies under one of the parts."""
    return any(key == path or key.startswith(path + "/") for path in self.parts)


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{"g/params/down1/kernel": shape} of every array leaf.

  Orbax names a leaf by its path's dict keys, attribute names and sequence indices, so the
  paths of a TrainState and of the checkpoint's metadata tree are directly comparable.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in leaves if hasattr(leaf, "shape")}


def tree_differences(saved: dict[str, tuple[int, ...]],
                     expected: dict[str, tuple[int, ...]]) -> list[str]:
  """Human-readable lists of missing, unexpected and wrong-shaped keys (empty if they match)."""
  def listed(keys: Sequence[str], describe) -> str:
    shown = [describe(k) for k in sorted(keys)[:_MAX_LISTED_KEYS]]
    more = len(keys) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

  missing = [k for k in expected if k not in saved]
  unexpected = [k for k in saved if k not in expected]
  reshaped = [k for k in expected if k in saved and saved[k] != expected[k]]
  parts = []
  if missing:
    parts.append(f"{len(missing)} missing from the checkpoint ("
                 + listed(missing, lambda k: f"{k} {expected[k]}") + ")")
  if unexpected:
    parts.append(f"{len(unexpected)} unexpected in the checkpoint ("
                 + listed(unexpected, lambda k: f"{k} {saved[k]}") + ")")
  if reshaped:
    parts.append(f"{len(reshaped)} of another shape ("
                 + listed(reshaped, lambda k: f"{k}: checkpoint {saved[k]}, model {expected[k]}")
                 + ")")
  return parts
