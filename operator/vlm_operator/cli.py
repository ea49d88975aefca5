"""The `vlm-operator` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vlm_operator import __version__
from vlm_operator.crdgen import render_crd_yaml
from vlm_operator.validation import validate_files


def _cmd_crd(args: argparse.Namespace) -> int:
    sys.stdout.write(render_crd_yaml())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    problems = validate_files([Path(name) for name in args.files])
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{len(args.files)} file(s) valid")
    return 1 if problems else 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vlm-operator",
        description="Size, deploy and autoscale vision-language models on vLLM.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crd = commands.add_parser("crd", help="print the VisionModel CustomResourceDefinition")
    crd.set_defaults(handler=_cmd_crd)

    validate = commands.add_parser("validate", help="check VisionModel YAML files offline")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=_cmd_validate)

    version = commands.add_parser("version", help="print the operator version")
    version.set_defaults(handler=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
