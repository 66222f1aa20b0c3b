"""Layer 7, inference: batched prediction, pooled vectors, 2-D maps, contributions, explanations."""
