"""colorjax: automatic image colorization in JAX/Flax.

`colorjax.Colorizer` (see `colorjax.inference`) is imported on first use, so that
`import colorjax` stays cheap and does not start JAX.
"""

from typing import Any


def __getattr__(name: str) -> Any:
  if name == "Colorizer":
    from colorjax.inference import Colorizer  # pylint: disable=g-import-not-at-top
    return Colorizer
  raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
