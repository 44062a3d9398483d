"""Benchmarks that drive the core: the tabular NAS benchmark."""
