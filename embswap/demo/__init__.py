"""`embswap demo`: two recipes, each a module.

- :mod:`embswap.demo.encoder` (the default): a real pretrained sentence encoder, all-MiniLM-L6-v2,
  learns German, Russian, Chinese and Hindi through language packs alone (body frozen), scored on
  held-out books no stage read.
- :mod:`embswap.demo.monotrans` (``--recipe monotrans``): the paper's route on a toy English BERT
  pretrained from scratch, with its controls and self-transfer.
"""

from .encoder import EncoderDemo, EncoderDemoConfig, run_encoder_demo
from .monotrans import Demo, DemoConfig, run_demo
from .monotrans import _bible as _bible  # re-exported: tests patch the Bible reader here

RECIPES = ("encoder", "monotrans")  # the first is `embswap demo`'s default

__all__ = ["RECIPES", "Demo", "DemoConfig", "EncoderDemo", "EncoderDemoConfig", "run_demo", "run_encoder_demo"]
