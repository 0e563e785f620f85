"""Backends that run anywhere: OpenCV and numpy, no weights."""
