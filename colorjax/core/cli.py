"""The command line of every colorjax command (main, compare, colorize, serve, export, prepare).

Every command takes absl flags (`--flag=value` or `--flag value`, `--[no]flag` for booleans,
`--flagfile=FILE`); `main` adds `--config.KEY=VALUE` overrides of its config. Each command
keeps its flags in its own `flags.FlagValues` (a `Command`), not in absl's global `flags.FLAGS`:
a process that imports several commands (the tests, a notebook) would otherwise see their flags
collide (`--workdir` is main's and colorize's), and a command called twice in one process would
start from the values of the first call.

A `Command` gives every command the same behaviour:
  * `--help` (`-h`, `--helpfull`): the module docstring, then every flag with its help and its
    default (or "required"); exit 0;
  * a mistake on the command line (an unknown flag, a bad value, a missing required flag): one
    `error: ...` line on stderr and exit 2 (`errors.EXIT_USER_ERROR`);
  * a `UserError` raised by the command's body: one line and exit 2 as well.
"""

from __future__ import annotations

import sys
import textwrap
import types
from typing import Callable, Sequence

from absl import flags
from absl import logging

from colorjax.core import errors

Args = types.SimpleNamespace
HELP_FLAGS = ("-h", "--help", "--helpfull", "--helpshort")
_WIDTH = 100


def _default_text(flag: flags.Flag) -> str:
  if flag.default is None:
    return "None"
  if flag.boolean:
    return "true" if flag.default else "false"
  if isinstance(flag.default, list) and not flag.default:
    return "none"  # A multi-flag given no times (serializes to nothing).
  return flag.serialize().split("=", 1)[1] if flag.default != "" else '""'


class Command:
  """One command's flags (`self.flags`, defined with `flag_values=command.flags`), its --help
  and its parse.

  Args:
    prog: how the command is run, e.g. "python -m colorjax.colorize".
    doc: the text --help shows above the flags (the command module's docstring).
    required: flags that must be given (absl's None default means "not given").
    positional: the attribute that receives the positional arguments (None: none are taken).
    epilog: text --help shows below the flags (e.g. the exit codes).
  """

  def __init__(self, prog: str, doc: str | None, *, required: Sequence[str] = (),
               positional: str | None = None, epilog: str = ""):
    self.prog = prog
    self.doc = (doc or "").strip()
    self.required = tuple(required)
    self.positional = positional
    self.epilog = epilog.strip()
    self.flags = flags.FlagValues()

  def _own_flags(self) -> list[flags.Flag]:
    """Each defined flag once (a short name is a second key of the same flag), by name."""
    unique = {self.flags[name].name: self.flags[name] for name in self.flags}
    return [unique[name] for name in sorted(unique)]

  def help(self) -> str:
    """The --help text: the docstring, the flags with help and default, the epilog."""
    lines = [self.doc, "", "flags:"] if self.doc else [f"usage: {self.prog} [flags]", "", "flags:"]
    for flag in self._own_flags():
      name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
      if flag.short_name:
        name = f"-{flag.short_name},{name}"
      notes = ["required" if flag.name in self.required else f"default: {_default_text(flag)}"]
      if flag.parser.syntactic_help:  # "an integer in the range [1, 100]", ...
        notes.append(flag.parser.syntactic_help)
      lines.append(textwrap.fill(f"{name}: {flag.help} ({'; '.join(notes)})", width=_WIDTH,
                                 initial_indent="  ", subsequent_indent="      "))
    if self.epilog:
      lines += ["", self.epilog]
    return "\n".join(lines)

  def parse(self, argv: Sequence[str]) -> Args:
    """The flag values of `argv` (no program name) as attributes, plus `self.positional`.

    Raises:
      errors.UserError: an unknown flag, a bad value, a missing required flag, or positional
        arguments for a command that takes none; the message says which.
    """
    # Values from an earlier parse in this process (a second in-process call) must not leak.
    self.flags.unparse_flags()
    try:
      rest = self.flags([self.prog, *argv])[1:]
    except flags.Error as e:
      raise errors.UserError(str(e)) from None
    missing = [f"--{name}" for name in self.required if self.flags[name].value is None]
    if missing:
      raise errors.UserError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             "required")
    if rest and not self.positional:
      raise errors.UserError(f"unexpected arguments: {' '.join(rest)}")
    args = Args(**{flag.name: flag.value for flag in self._own_flags()})
    if self.positional:
      setattr(args, self.positional, rest)
    return args

  def run(self, body: Callable[[Args], int], argv: Sequence[str] | None = None,
          parse: Callable[[Sequence[str]], Args] | None = None) -> int:
    """A command's main: --help, parse (`parse`, default `self.parse`), then `body(args)`.

    Returns:
      The exit code: 0 after --help, 2 (one line on stderr) for a mistake on the command line or
      a `UserError` from `body`, else what `body` returns.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    flag_part = argv[:argv.index("--")] if "--" in argv else argv
    if any(arg in HELP_FLAGS for arg in flag_part):
      print(self.help())
      return 0
    try:
      args = (parse or self.parse)(argv)
    except errors.UserError as e:
      return errors.report(f"{e}  (--help lists the flags)")
    try:
      return body(args)
    except errors.UserError as e:
      return errors.report(e)


def use_absl_logging(verbosity: int | None) -> None:
  """What absl's `app.run` sets up for logging, for a command that owns its flags: absl's
  handler and line format on stderr, and `verbosity` (0 INFO, 1 DEBUG; None: absl's default,
  warnings). The global absl flags are marked parsed at their defaults: until they are, absl's
  handler prefixes the first record with a "Logging before flag parsing" notice."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  if verbosity is not None:
    logging.set_verbosity(verbosity)
