"""The embswap command line (installed as ``embswap.cli``; console script ``embswap``)."""
