"""Benchmarks: each measurement is printed beside the raw driver doing the same work."""
