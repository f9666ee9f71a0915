"""Benchmarks and design studies of perception; not product code."""
