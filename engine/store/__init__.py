"""Layer 5, store: model directories (card, weights, uncertainty files): save, load, list."""
