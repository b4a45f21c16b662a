"""Tests of task heads, evaluation, sentence encoders and diagnostics."""
