"""`vlm-operator run`: start the metrics server and the kopf operator."""

from __future__ import annotations

import argparse
import logging

import kopf
from prometheus_client import start_http_server

import vlm_operator.handlers  # noqa: F401  (registers the handlers)


def run_operator(args: argparse.Namespace) -> int:
    """Run until interrupted."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    kopf.run(
        standalone=args.standalone,
        clusterwide=args.all_namespaces or not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0
