"""Element and composition descriptors."""
