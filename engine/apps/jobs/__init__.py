"""Background jobs (training, physics) in separate processes: start, poll, cancel, list."""
