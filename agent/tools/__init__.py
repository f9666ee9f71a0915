"""Benchmarks and studies of the agent (guard release, session kill-safety); not product code."""
