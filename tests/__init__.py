"""embswap's test suite, grouped by layer (see tests/helpers for shared code)."""
