"""Loading config files and overriding their keys from Python: the one loader that the
benchmarks, `compare`, the docs scripts and the tests use.

`python -m colorjax.main --config=configs/lsgan.py:cifar --config.batch_size=64` loads the same
file and variant with these functions: `load("lsgan:cifar")` with
`apply_overrides(config, ["batch_size=64"])` gives the same ConfigDict in Python.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from typing import Sequence

import ml_collections

# configs/ of the repository (an editable install, as the README sets up).
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")


def names() -> list[str]:
  """The config names in configs/ ("lsgan", "pix2pix", ...)."""
  try:
    return sorted(n[:-3] for n in os.listdir(CONFIG_DIR) if n.endswith(".py") and n[0] != "_")
  except OSError:
    return []


def load(spec: str, *, locked: bool = False) -> ml_collections.ConfigDict:
  """`name[:variant]` from configs/ (e.g. "lsgan:cifar"), or `path/to/file.py[:variant]`.

  Unlocked unless `locked` (the trainer's flags lock configs: a mistyped key then fails).
  """
  name, colon, variant = spec.partition(":")
  path = name if name.endswith(".py") else os.path.join(CONFIG_DIR, f"{name}.py")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config {name!r} ({path}); known: {', '.join(names())}")
  module_name = f"colorjax_config_{os.path.basename(path)[:-3]}"
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  # As ml_collections' config_flags: the variant is an argument only when one is given, so a
  # config file whose get_config() takes none loads too.
  config = module.get_config(variant) if colon else module.get_config()
  if locked:
    config.lock()
  return config


def _parse_value(text: str, current: object) -> object:
  """A command-line value with the type of the key it replaces (a literal for new keys)."""
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"expected a boolean, got {text!r}")
    return text.lower() in ("true", "1")
  if isinstance(current, (int, float)) and not isinstance(current, bool):
    try:
      return type(current)(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError):
      raise ValueError(f"expected {'an int' if isinstance(current, int) else 'a float'}, "
                       f"got {text!r}") from None
  if isinstance(current, str):
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """Applies "a.b.c=value" strings; new keys only inside `*_kwargs` (e.g. U-Net widths)."""
  for override in overrides:
    key, sep, text = override.partition("=")
    if not sep:
      raise ValueError(f"override {override!r} is not of the form key=value")
    *parents, leaf = key.strip().split(".")
    node = config
    for parent in parents:
      node = node[parent]
    if leaf not in node and not (parents and parents[-1].endswith("_kwargs")):
      raise KeyError(f"override {override!r}: no key {key!r} in the config")
    with node.unlocked():
      node[leaf] = _parse_value(text, node[leaf] if leaf in node else None)
