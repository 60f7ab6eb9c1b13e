"""Benchmark suites behind `mxfp4 bench`; results go to docs/benchmarks as JSON and markdown."""
