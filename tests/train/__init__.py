"""Tests of the training steps (pretrain, transfer, fine-tune) and their quality."""
