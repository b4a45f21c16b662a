"""Pooling: token states [batch, seq, hidden] -> one vector per sentence.

Shared by encoding (embswap/tasks/sentence.py), the alignment objective (embswap/train/align.py) and
export, which writes the pooling as sentence-transformers files; light on purpose, so encoding a
sentence imports no training code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .architectures import max_input_tokens
from .choices import POOLING_MODES
from .errors import DataError

DEFAULT_POOLING = {"mode": "mean", "normalize": True, "max_length": 256}
# sentence-transformers' Pooling config keys, each naming one of POOLING_MODES.
ST_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """[batch, seq, hidden] -> [batch, hidden] over the unmasked positions."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
    raise DataError(f"unknown pooling {mode!r}; expected one of: {', '.join(POOLING_MODES)}")


def pooled_states(model, input_ids, attention_mask, mode: str = "mean", inputs_embeds=None) -> torch.Tensor:
    """Pooled last-layer states of the model's encoder (the base model, without any head)."""
    base = model.base_model
    kwargs = {"attention_mask": attention_mask}
    if inputs_embeds is not None:
        kwargs["inputs_embeds"] = inputs_embeds
    else:
        kwargs["input_ids"] = input_ids
    hidden = base(**kwargs).last_hidden_state
    return pool(hidden, attention_mask, mode)


def fitted_length(model, max_length: int) -> int:
    """The pooling's length cut to what the model reads (a 256-token default on a 64-position body)."""
    limit = max_input_tokens(model.config)
    return int(max_length) if limit is None else min(int(max_length), limit)


def write_sentence_transformer_files(model, settings: dict, folder: Path) -> None:
    """The files that make an exported folder a SentenceTransformer: modules, pooling, normalisation."""
    settings = dict(DEFAULT_POOLING, **settings)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if settings["normalize"]:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir()
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir()
    pooling = {key: settings["mode"] == mode for key, mode in ST_MODES.items()}
    pooling.update(word_embedding_dimension=model.config.hidden_size, pooling_mode_mean_sqrt_len_tokens=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": fitted_length(model, settings["max_length"]), "do_lower_case": False}, indent=2)
    )
