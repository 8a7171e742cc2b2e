"""vla-edge: Greengrass v2 components that run LeRobot VLA policies on edge devices."""

__version__ = "0.1.0"
