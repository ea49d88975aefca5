"""The kopf layer: importing this package registers every handler."""

from vlm_operator.handlers import visionmodel

__all__ = ["visionmodel"]
