"""Tests of hostile artifacts, crashes, concurrency, output paths and performance guards."""
