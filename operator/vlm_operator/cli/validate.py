"""`vlm-operator validate`: check VisionModel YAML files offline, naming each bad field."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from vlm_operator.api.validation import duplicate_keys, validate_files


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the validate subcommand."""
    parser = commands.add_parser("validate", help="check VisionModel YAML files offline")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Handler of `vlm-operator validate`: one line per problem, exit 1 when there are any.
    Duplicate keys are warnings: printed, but the exit code stays that of the problems."""
    paths = [Path(name) for name in args.files]
    problems = validate_files(paths)
    for path in paths:
        try:
            warnings = duplicate_keys(path)
        except (OSError, yaml.YAMLError):
            continue  # already reported as a problem of the file
        for warning in warnings:
            print(warning)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{len(args.files)} file(s) valid")
    return 1 if problems else 0
