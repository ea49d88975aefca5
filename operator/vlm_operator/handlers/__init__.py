"""The kopf layer, and the only package that imports kopf: it wires watch events and timers to the
control loops. May import controllers, k8s, api and status; nothing imports it but cli.run."""
