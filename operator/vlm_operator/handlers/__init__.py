"""The kopf layer: importing this package registers every handler."""

from vlm_operator.handlers import autoscaling, visionmodel

__all__ = ["autoscaling", "visionmodel"]
