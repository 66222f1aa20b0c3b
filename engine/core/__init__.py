"""Layer 0, core: typed configuration, units and the torch device. Imports nothing else from the engine."""
