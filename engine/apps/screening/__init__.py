"""Thermal-expansion screening: candidates streamed in, filtered, predicted, ranked against an electrolyte (locally or on Dask)."""
