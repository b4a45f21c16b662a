"""The quality bar each demo is held to, in one place: the demo reports, the benchmarks and the tests
read these instead of repeating the numbers."""

from __future__ import annotations

# MonoTrans demo (monotrans.py): every language's zero-shot accuracy at least this many points above
# the better control (majority class, untrained pack), and self-transfer at least this share of English.
MARGIN_BAR = 10.0
SELF_TRANSFER_BAR = 0.8

# Encoder demo (encoder.py): zero-shot genre accuracy at least this % of English's and this many points
# above the best control; retrieval top-1 both ways at least this % (German), else the default.
GENRE_OF_ENGLISH_BAR = 90.0
GENRE_MARGIN_BAR = 15.0
RETRIEVAL_BAR = {"de": 90.0}
RETRIEVAL_BAR_OTHER = 80.0
