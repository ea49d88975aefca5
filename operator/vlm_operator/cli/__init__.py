"""The `vlm-operator` command line, one module per subcommand. Only `run` loads kopf (through
handlers); the others are offline and import the pure layers."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from vlm_operator.cli import crd, plan, run, validate, version

SUBCOMMANDS = (run, plan, validate, crd, version)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vlm-operator",
        description="Size, deploy and autoscale vision-language models on vLLM.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code
