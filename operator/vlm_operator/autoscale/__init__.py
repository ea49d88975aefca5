"""Autoscaling, pure: the policy (metrics and history in, desired replicas out) and the signals it
reads. May import api only. The I/O half, the metric sources, is the `sources` subpackage."""
