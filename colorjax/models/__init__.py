"""Generators and discriminators, selected by name from `config.model`.

Contracts every model keeps (the trainer, eval, colorize and export rely on them):

* A generator is a Flax Linen module built as `GENERATORS.get(name)(dtype=..., **kwargs)`.
  `__call__(l, *, train)` takes normalised lightness `l` of shape (B, H, W, 1) in [-1, 1] (a
  model trained with hints, `config.model.hints`, takes (B, H, W, 4): L, the hint ab map and
  its mask, `colorjax.color.hints`; every generator's first layer is a convolution over its
  input's channels, so each takes hints unchanged) and returns a dict with at least `"ab"`:
  (B, H, W, 2) normalised chroma in [-1, 1] (ab / 110).
  Classification generators also return `"logits"`: (B, h, w, Q) over the ab bins; generators
  with an image-level branch may return `"class_logits"`: (B, num_classes).
  Dropout (used as noise, pix2pix style) draws from the `"dropout"` RNG stream; BatchNorm keeps
  its running statistics in the `"batch_stats"` collection.
* A discriminator is built the same way from `DISCRIMINATORS`; `__call__(l, ab, *, train)`
  scores the (L, ab) pair and returns an array whose first axis is the batch (patch logits
  (B, h, w, 1), a global logit (B, 1), or a per-sample energy (B,)); the objective interprets it.
* `dtype` is the computation dtype; parameters stay float32.
* `conv` is the convolution implementation, "xla" or "im2col" (`layers.CONV_IMPLS`): it
  changes how the convolutions are computed, never the parameters, so every checkpoint loads
  under either. The builders below resolve "auto" once; a model never reads the backend.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import flax.linen as nn

from colorjax.core.registry import Registry
from colorjax.models import layers

GENERATORS: Registry[type[nn.Module]] = Registry("generator")
DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator")


def _build(registry: Registry, name: str, kwargs: Mapping[str, Any], dtype: Any,
           conv: str) -> nn.Module:
  cls = registry.get(name)
  fields = {f for f in inspect.signature(cls).parameters if f not in ("parent", "name")}
  if "conv" in kwargs:
    raise ValueError(f"{registry.kind} {name!r}: the convolution implementation is "
                     "model.conv, not a model option")
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(
        f"{registry.kind} {name!r} has no option(s) {unknown}; "
        f"its options are {sorted(fields - {'dtype', 'conv'})}")
  return cls(dtype=dtype, conv=layers.resolve_conv(conv), **kwargs)


def build_generator(name: str, kwargs: Mapping[str, Any], dtype: Any,
                    conv: str = "auto") -> nn.Module:
  """The generator `name` with options `kwargs`, computing in `dtype`.

  `conv` is the convolution implementation, `layers.CONV_CHOICES`; "auto" is resolved now, for
  the local backend (`layers.resolve_conv`), never later at trace time.
  """
  return _build(GENERATORS, name, kwargs, dtype, conv)


def build_discriminator(name: str, kwargs: Mapping[str, Any], dtype: Any,
                        conv: str = "auto") -> nn.Module:
  """The discriminator `name`, built like `build_generator`."""
  return _build(DISCRIMINATORS, name, kwargs, dtype, conv)


# Importing the model modules registers them.
from colorjax.models import discriminators, fusion, patchgan, plain, unet, zhang  # noqa: E402,F401
