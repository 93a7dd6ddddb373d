"""colorjax: automatic image colorization in JAX/Flax.

`colorjax.Colorizer` (see `colorjax.inference`) is imported on first use, so that
`import colorjax` stays cheap and does not start JAX.
"""

from typing import Any


def __getattr__(name: str) -> Any:
  if name == "Colorizer":
    # (a) JAX on first use: every `import colorjax.<module>` runs this package first, and
    # colorjax.inference would add ~630 ms to each (`python -m colorjax.colorize --help` too).
    from colorjax.inference import Colorizer  # pylint: disable=g-import-not-at-top
    return Colorizer
  raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
