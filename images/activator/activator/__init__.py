"""The wake-from-zero activator: a front proxy that raises a VisionModel from 0 to 1 replica."""
