"""Layer 4, uq: pure numerics of trust: regression metrics, σ calibration, applicability domain and the uncertainty card schema; calibration to measured values."""
