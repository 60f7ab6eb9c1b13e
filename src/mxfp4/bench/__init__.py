"""Benchmark suites behind `mxfp4 bench`; results go to `--out` (default ./bench-SUITE) as JSON
and markdown. The records in a checkout's docs/benchmarks are written with --out docs/benchmarks."""
