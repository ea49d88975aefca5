"""`vlm-operator version`: print the package version."""

from __future__ import annotations

import argparse

from vlm_operator import __version__


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the version subcommand."""
    parser = commands.add_parser("version", help="print the operator version")
    parser.set_defaults(handler=run_version)


def run_version(args: argparse.Namespace) -> int:
    """Handler of `vlm-operator version`."""
    print(__version__)
    return 0
