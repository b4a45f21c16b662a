"""Tests of artifacts, composing, the store, the Hub, packaging and the code checks."""
