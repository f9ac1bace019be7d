"""Benchmarks with their targets; `make bench` runs them all (never part of `make test`)."""
