"""The names each option of the library accepts, in one light module (no torch at import).

The CLI lists and checks these before it loads torch; the modules that implement each choice import
the names from here, so a choice list and what the library accepts cannot drift apart.
"""

from __future__ import annotations

# Initialisations of a new pack's matrix (embswap/init.py).
INIT_METHODS = ("random", "overlap", "dictionary", "subword-mean", "aligned")
# What happens to the rows an init set from the reference pack (embswap/train/anchors.py resolve_anchors).
ANCHOR_MODES = ("auto", "free", "frozen", "penalty")
# How token states become one sentence vector (embswap/pooling.py).
POOLING_MODES = ("mean", "cls", "max")
# What step 3 trains (embswap/train/finetune.py).
FINETUNE_MODES = ("full", "adapter", "frozen")
# The step-2 objectives embswap registers itself (embswap/train/objectives.py); more may be registered.
OBJECTIVES = ("mlm", "align")
# The objectives a re-learned robust pack may use (embswap/train/robust.py): MLM, alignment, or both.
ROBUST_OBJECTIVES = ("mlm", "mlm+align", "align")
