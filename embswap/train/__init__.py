"""Training stages: tokenizer, pretraining (step 1), transfer (step 2), fine-tuning (step 3).

Light on purpose: each objective registers itself in the module that defines it
(embswap/train/objectives.py), so importing this package loads no training code.
"""
