"""Pure reconcile logic: observed state and plan in, status and events out."""
