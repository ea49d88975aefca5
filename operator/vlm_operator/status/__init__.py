"""Status, pure: the plan and the observed children in, conditions and events out. May import api,
sizing (the Plan type) and render.labels; never k8s, kopf or the controllers."""
