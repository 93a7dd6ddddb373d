"""Mistakes a user can fix (a config path, a key, a data folder, a workdir) and how commands
report them: one line on stderr and a non-zero exit, no traceback. Tracebacks stay for bugs.

Kept free of JAX imports: every command's entry point catches `UserError`.
"""

from __future__ import annotations

import sys

# Exit code of a command that stopped on a user error, a mistake on its command line included.
EXIT_USER_ERROR = 2


class UserError(Exception):
  """Something the user asked for cannot be done as asked; the message says what to change."""


def one_line(message: str) -> str:
  """`message` with its lines joined: a terminal or a log grep shows it whole."""
  return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def report(error: BaseException | str, code: int = EXIT_USER_ERROR) -> int:
  """Prints `error: <message>` on one line of stderr; returns `code` for the caller to exit."""
  # One write, so that other threads' output cannot split the line.
  sys.stderr.write(f"error: {one_line(str(error))}\n")
  sys.stderr.flush()
  return code
