"""Benchmarks: each prints a table and ends stdout with one JSON line."""
