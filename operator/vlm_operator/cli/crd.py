"""`vlm-operator crd`: print the VisionModel CustomResourceDefinition."""

from __future__ import annotations

import argparse
import sys

from vlm_operator.api.crd import render_crd_yaml


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the crd subcommand."""
    parser = commands.add_parser("crd", help="print the VisionModel CustomResourceDefinition")
    parser.set_defaults(handler=run_crd)


def run_crd(args: argparse.Namespace) -> int:
    """Handler of `vlm-operator crd`."""
    sys.stdout.write(render_crd_yaml())
    return 0
