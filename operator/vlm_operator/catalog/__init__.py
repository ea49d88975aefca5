"""Facts the planner works from: architectures, GPUs and the pinned vLLM engine."""
