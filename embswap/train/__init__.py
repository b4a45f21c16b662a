"""Training stages: tokenizer, pretraining (step 1), transfer (step 2), fine-tuning (step 3)."""

from . import transfer as _transfer
from .align import _align_terms

_transfer.register_objective("align", _align_terms)
