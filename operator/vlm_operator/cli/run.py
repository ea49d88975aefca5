"""`vlm-operator run`: the operator's metrics server and control loops against a cluster."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from vlm_operator.api.config import OperatorConfig


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the run subcommand, its flags named as kopf names them."""
    parser = commands.add_parser("run", help="run the operator against the current cluster")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group(required=True)
    peering.add_argument(
        "--standalone", action="store_true", help="run without kopf peering (one replica only)"
    )
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="kopf peering through this (Cluster)KopfPeering object, which must exist; of "
        "several operators only one acts",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="operator configuration (YAML, camelCase keys); VLM_OPERATOR_* variables override it",
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="0 disables /metrics")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address /metrics binds")
    parser.add_argument(
        "--liveness", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=run_run)


def run_run(args: argparse.Namespace) -> int:
    """Handler of `vlm-operator run`: load the configuration, then run until stopped."""
    try:
        config = OperatorConfig.load(args.config, os.environ)
    except (OSError, ValueError, ValidationError) as error:
        print(f"vlm-operator run: invalid configuration: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from prometheus_client import start_http_server

    # kopf loads only for this command.
    from vlm_operator.handlers.runtime import PeeringMissingError, run_operator

    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    try:
        run_operator(
            config,
            namespaces=args.namespace,
            peering=args.peering,
            liveness_endpoint=args.liveness,
        )
    except PeeringMissingError as error:
        print(f"vlm-operator run: {error}", file=sys.stderr)
        return 2
    return 0
