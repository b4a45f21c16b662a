"""Tests of the demo recipes and the benchmarks' engine."""
