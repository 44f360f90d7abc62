"""Engines: ways to make an Avatar from a photo (each in its own module, imported on demand)."""
