"""Input and output of structures beyond local files (databases, archives, formats)."""
