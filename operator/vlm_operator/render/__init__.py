"""Pure rendering: (VisionModel, plan, config) -> the desired child objects as plain dicts."""
