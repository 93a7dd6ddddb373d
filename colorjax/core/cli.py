"""Shared pieces of the argparse commands (colorize, export, serve, prepare)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Every optional flag's default in --help (required ones have none to show), and the line
  breaks of the description and epilog kept."""

  def _get_help_string(self, action: argparse.Action) -> str | None:
    if action.required:
      return action.help
    return super()._get_help_string(action)
