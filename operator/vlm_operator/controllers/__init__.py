"""The control loops: orchestration of the pure layers around the API client, without kopf.
reconcile_loop: spec -> plan -> desired children -> apply -> observed -> status.
autoscale_loop: metrics -> policy -> desired replicas -> the scale subresource.
May import every layer but handlers and cli."""
