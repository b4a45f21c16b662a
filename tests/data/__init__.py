"""Tests of corpora, task data and tokenizers."""
