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


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the run subcommand, named as kopf names them."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--standalone", action="store_true", help="run without kopf peering (one replica only)"
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="0 disables /metrics")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address /metrics binds")
    parser.add_argument(
        "--liveness", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _cmd_run(args: argparse.Namespace) -> int:
    from vlm_operator.runner import run_operator  # kopf loads only for this command

    return run_operator(args)


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

    run = commands.add_parser("run", help="run the operator against the current cluster")
    add_run_arguments(run)
    run.set_defaults(handler=_cmd_run)

    from vlm_operator.plan_cli import add_plan_command

    add_plan_command(commands)

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
