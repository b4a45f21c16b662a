"""Splitting a transformers checkpoint into a Body and its first LanguagePack."""

from __future__ import annotations

import contextlib
import os

import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as transformers_logging

from .architectures import (
    embedding_dim,
    family_of,
    pack_parameter_names,
    position_embeddings,
    special_token_ids,
    word_embeddings,
)
from .artifacts import Body, LanguagePack, architecture_config
from .errors import ArtifactNotFoundError, UnsupportedModelError


def split_model(
    model: PreTrainedModel, tokenizer, language: str, *, provenance: dict | None = None
) -> tuple[Body, LanguagePack]:
    """Split a live masked LM (or a bare encoder) into a body and the pack for ``language``."""
    family = family_of(model.config)
    headless = model is model.base_model
    names = pack_parameter_names(model)
    pack_names = set(names["word_embeddings"]) | set(names["output_bias"])
    prefix = model.base_model_prefix
    tensors = {
        # Bare encoders name tensors without the base prefix; give them the with-head spelling.
        (f"{prefix}.{name}" if headless else name): tensor.detach().clone()
        for name, tensor in model.state_dict().items()
        if name not in pack_names
    }
    out = model.get_output_embeddings() if not headless else None
    body = Body(
        family=family.name,
        model_config=architecture_config(model.config),
        special_tokens=special_token_ids(tokenizer, family),
        tensors=tensors,
        embedding_dim=embedding_dim(model),
        head="none" if headless else "mlm",
        provenance=dict(provenance or {}),
    )
    pack = LanguagePack(
        language=language,
        tokenizer=tokenizer,
        word_embeddings=word_embeddings(model).weight.detach().clone(),
        output_bias=out.bias.detach().clone() if out is not None and out.bias is not None else None,
        body_fingerprint=body.fingerprint,
        provenance={"init": "split", "trained": "with the body", **(provenance or {})},
    )
    return body, pack


def split(
    location: str | os.PathLike, language: str, *, revision: str | None = None, allow_headless: bool = False
) -> tuple[Body, LanguagePack]:
    """Split a checkpoint folder or Hub id. Without an MLM head it is refused unless ``allow_headless``."""
    folder = location  # a local folder, or a Hub id that transformers resolves itself
    try:
        config = AutoConfig.from_pretrained(str(folder), revision=revision, trust_remote_code=False)
    except OSError as err:
        raise ArtifactNotFoundError(
            f"cannot read a model config from {location} ({str(err).splitlines()[0]})"
        ) from None
    family_of(config)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), revision=revision, use_fast=True, trust_remote_code=False)
    with _quiet_transformers():  # "newly initialized" warnings are expected for head-less encoders
        model, info = AutoModelForMaskedLM.from_pretrained(
            str(folder), revision=revision, output_loading_info=True, trust_remote_code=False
        )
    if info["missing_keys"]:
        if not allow_headless:
            raise UnsupportedModelError(
                f"{location} has no masked-LM head (missing {info['missing_keys'][0]}, ...); the method trains new "
                "embeddings through the MLM head, so split a *ForMaskedLM checkpoint, or pass --headless to split "
                "an encoder for the alignment objective"
            )
        model = AutoModel.from_pretrained(str(folder), revision=revision, trust_remote_code=False)
    model.eval()
    return split_model(model, tokenizer, language, provenance={"source": str(location)})


@contextlib.contextmanager
def _quiet_transformers():
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(previous)


def clone_position_embeddings(model: PreTrainedModel) -> torch.Tensor | None:
    """A copy of the body's position table (the starting point of a +pos pack)."""
    pos = position_embeddings(model)
    return None if pos is None else pos.weight.detach().clone()
