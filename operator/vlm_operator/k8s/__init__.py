"""Side effects: the only package that talks to the Kubernetes API."""
