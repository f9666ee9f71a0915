"""Benchmarks and studies of training (allocator, joint trunk, anchor coverage); not product code."""
