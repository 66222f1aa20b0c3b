"""Shared building blocks of the dashboard pages: plots, the 3D viewer, forms, notes."""
