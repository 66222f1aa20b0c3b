"""Layer 6, catalog: model names: the shipped models, the user's models and the original CGCNN checkpoints."""
