"""The kopf layer, and the only package that imports kopf: it hands watch events to the control
loops' runner. May import controllers, k8s, api and status; nothing imports it but cli.run."""
