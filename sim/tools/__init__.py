"""Benchmarks and studies of the simulator (step speed, the expert's figures); not product code."""
