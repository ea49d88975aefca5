"""Autoscaling: the pure policy and the metric sources it reads."""
