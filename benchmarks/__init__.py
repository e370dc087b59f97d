"""Benchmarks: evaluation harnesses and performance suites, each measured against a baseline
in the same run and reported as ratios."""
