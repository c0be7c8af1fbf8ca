"""Benchmarks: load generators, fast fakes and the harnesses that write bench/results/."""
