"""Generators and discriminators, selected by name from `config.model`.

Contracts every model keeps (the trainer, eval, colorize and export rely on them):

* A generator is a Flax Linen module built as `GENERATORS.get(name)(dtype=..., **kwargs)`.
  `__call__(l, *, train)` takes normalised lightness `l` of shape (B, H, W, 1) in [-1, 1] and
  returns a dict with at least `"ab"`: (B, H, W, 2) normalised chroma in [-1, 1] (ab / 110).
  Classification generators also return `"logits"`: (B, h, w, Q) over the ab bins; generators
  with an image-level branch may return `"class_logits"`: (B, num_classes).
  Dropout (used as noise, pix2pix style) draws from the `"dropout"` RNG stream; BatchNorm keeps
  its running statistics in the `"batch_stats"` collection.
* A discriminator is built the same way from `DISCRIMINATORS`; `__call__(l, ab, *, train)`
  scores the (L, ab) pair and returns an array whose first axis is the batch (patch logits
  (B, h, w, 1), a global logit (B, 1), or a per-sample energy (B,)); the objective interprets it.
* `dtype` is the computation dtype; parameters stay float32.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import flax.linen as nn

from colorjax.core.registry import Registry

GENERATORS: Registry[type[nn.Module]] = Registry("generator")
DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator")


def _build(registry: Registry, name: str, kwargs: Mapping[str, Any], dtype: Any) -> nn.Module:
  cls = registry.get(name)
  fields = {f for f in inspect.signature(cls).parameters if f not in ("parent", "name")}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(
        f"{registry.kind} {name!r} has no option(s) {unknown}; "
        f"its options are {sorted(fields - {'dtype'})}")
  return cls(dtype=dtype, **kwargs)


def build_generator(name: str, kwargs: Mapping[str, Any], dtype: Any) -> nn.Module:
  return _build(GENERATORS, name, kwargs, dtype)


def build_discriminator(name: str, kwargs: Mapping[str, Any], dtype: Any) -> nn.Module:
  return _build(DISCRIMINATORS, name, kwargs, dtype)


# Importing the model modules registers them.
from colorjax.models import discriminators, fusion, patchgan, plain, unet, zhang  # noqa: E402,F401
