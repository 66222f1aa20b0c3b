"""Layer 9, apps: what users run: screening, background jobs, benchmarks and the command line."""
