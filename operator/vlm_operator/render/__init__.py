"""Rendering, pure: (VisionModel spec, Plan, OperatorConfig) -> the desired child objects as plain
dicts. May import api, catalog, sizing and the pure autoscale modules; never k8s or kopf."""
