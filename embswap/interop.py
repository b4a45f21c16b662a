"""Interop with the `adapters` library (AdapterHub): its saved embeddings and language adapters.

``adapters`` saves embeddings with ``model.save_embeddings(path, name, tokenizer=...)`` as
``embedding.pt`` (a pickled tensor, no config) plus a ``tokenizer/`` folder, and adapters with
``model.save_adapter`` as ``adapter_config.json`` plus ``adapter.safetensors`` or
``pytorch_adapter.bin``. Pickles are read only with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from . import adapters_support
from .artifacts import Body, LanguagePack, check_compatible, load_tokenizer
from .compose import as_artifact, build_empty_model
from .errors import CorruptArtifactError, IncompatibleArtifactError
from .io import atomic_folder, load_tensors
from .outputs import ADAPTERS, check_output

# File names the adapters library uses (adapters.utils: EMBEDDING_FILE, TOKENIZER_PATH, CONFIG_NAME, ...).
ADAPTERS_EMBEDDING_FILE = "embedding.pt"
ADAPTERS_TOKENIZER_DIR = "tokenizer"
ADAPTERS_CONFIG = "adapter_config.json"
ADAPTERS_SAFE_WEIGHTS = "adapter.safetensors"
ADAPTERS_WEIGHTS = "pytorch_adapter.bin"
# Module collections below which adapters keys a named adapter's weights (``...adapters.<name>.``).
_ADAPTER_CONTAINERS = (
    "adapters",
    "prefix_tunings",
    "prefix_gates",
    "loras",
    "refts",
    "shared_parameters",
    "prompt_tunings",
)


def _load_weights_only(path: Path):
    """torch.load restricted to tensors and plain containers: no code runs while reading."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler raises many types (UnpicklingError, RuntimeError, EOFError)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptArtifactError(
            f"{path} is not a plain tensor file ({first}); embswap reads only weights, never code"
        ) from None


def import_adapters_embeddings(path: str | os.PathLike, body, language: str, *, tokenizer=None) -> LanguagePack:
    """A LanguagePack from what ``adapters``' ``save_embeddings`` wrote (``embedding.pt`` + ``tokenizer/``).

    ``body`` is the Body (or its path / Hub id) whose model the embeddings were trained on.
    ``adapters`` keeps no MLM output bias, so a masked-LM body gets a zero bias (recorded in the
    pack's provenance); train it with ``embswap transfer`` to predict tokens well.
    """
    folder = Path(path)
    weights_file = folder / ADAPTERS_EMBEDDING_FILE
    if not weights_file.is_file():
        raise CorruptArtifactError(
            f"{folder} has no {ADAPTERS_EMBEDDING_FILE}; pass a folder written by adapters' save_embeddings"
        )
    weights = _load_weights_only(weights_file)
    if not isinstance(weights, torch.Tensor) or weights.dim() != 2 or not weights.is_floating_point():
        found = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise CorruptArtifactError(f"{weights_file} holds {found}, expected a 2-d float [vocab, dim] embedding matrix")
    if tokenizer is None:
        if not (folder / ADAPTERS_TOKENIZER_DIR).is_dir():
            raise CorruptArtifactError(
                f"{folder} has no {ADAPTERS_TOKENIZER_DIR}/ folder; save with save_embeddings(..., tokenizer=tok) or pass tokenizer="
            )
        tokenizer = load_tokenizer(folder / ADAPTERS_TOKENIZER_DIR)
    body = as_artifact(body, Body)
    matrix = weights.detach().clone().contiguous()
    pack = LanguagePack(
        language=language,
        tokenizer=tokenizer,
        word_embeddings=matrix,
        body_fingerprint=body.fingerprint,
        output_bias=torch.zeros(matrix.shape[0], dtype=matrix.dtype) if body.head == "mlm" else None,
        provenance={
            "init": "imported from adapters save_embeddings",
            "source": str(folder),
            "output_bias": "zeros: adapters does not save an MLM output bias"
            if body.head == "mlm"
            else "none (head-less body)",
        },
    )
    check_compatible(body, pack)
    return pack


def export_adapters_embeddings(pack, path: str | os.PathLike) -> Path:
    """Write a pack in the layout ``model.load_embeddings(path, name)`` of ``adapters`` reads.

    That layout has room for the input matrix and the tokenizer only: the MLM output bias,
    position embeddings and language adapter are not exported. ``embedding.pt`` is a plain
    tensor saved with torch.save, the one format adapters loads (it reads it with weights_only).
    ``path`` may be missing, empty or an earlier such export, never a user's files, a path inside an
    artifact or the pack's own folder (``outputs.check_output``, checked before anything is written).
    """
    check_output(path, ADAPTERS, inputs=(pack,))
    pack = as_artifact(pack, LanguagePack)
    with atomic_folder(path) as tmp:
        torch.save(pack.word_embeddings.detach().cpu().contiguous().clone(), tmp / ADAPTERS_EMBEDDING_FILE)
        pack.tokenizer.save_pretrained(str(tmp / ADAPTERS_TOKENIZER_DIR))
    return Path(path)


def read_adapters_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json contents, weights) of a folder written by ``adapters``' ``save_adapter``."""
    folder = Path(path)
    config_file = folder / ADAPTERS_CONFIG
    if not config_file.is_file():
        raise CorruptArtifactError(
            f"{folder} has no {ADAPTERS_CONFIG}; pass a folder written by adapters' save_adapter"
        )
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifactError(f"{config_file} is not valid JSON ({err})") from None
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("config"), dict)
        or not isinstance(saved.get("name"), str)
    ):
        raise CorruptArtifactError(
            f"{config_file} lacks the adapter's 'config' and 'name'; save the adapter again with adapters"
        )
    if (folder / ADAPTERS_SAFE_WEIGHTS).is_file():
        weights = load_tensors(folder / ADAPTERS_SAFE_WEIGHTS)
    elif (folder / ADAPTERS_WEIGHTS).is_file():
        weights = _load_weights_only(folder / ADAPTERS_WEIGHTS)
    else:
        raise CorruptArtifactError(
            f"{folder} has neither {ADAPTERS_SAFE_WEIGHTS} nor {ADAPTERS_WEIGHTS}; the adapter is incomplete"
        )
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CorruptArtifactError(f"{folder}: the adapter weights are not a name -> tensor mapping")
    return saved, weights


def _renamed(key: str, old: str, new: str) -> str:
    for container in _ADAPTER_CONTAINERS:
        key = key.replace(f"{container}.{old}.", f"{container}.{new}.")
    return key


def attach_adapters_language_adapter(pack, adapter_path: str | os.PathLike, body) -> LanguagePack:
    """The pack with a language adapter saved by ``adapters`` (e.g. a MAD-X language adapter) attached.

    The adapter is renamed to the name embswap composes it under ("language") and its tensor names
    are matched to the composed model's, so ``embswap.compose(body, pack)`` activates it.
    """
    pack = as_artifact(pack, LanguagePack)
    body = as_artifact(body, Body)
    check_compatible(body, pack)
    saved, weights = read_adapters_adapter(adapter_path)
    hidden = saved.get("hidden_size")
    if isinstance(hidden, int) and hidden != body.model_config.get("hidden_size", hidden):
        raise IncompatibleArtifactError(
            f"the adapter in {adapter_path} was trained for hidden size {hidden}, the body has {body.model_config.get('hidden_size')}"
        )
    model = build_empty_model(body, pack.vocab_size)
    prefix = f"{model.base_model_prefix}."
    headless = model is model.base_model
    tensors = {}
    for key, value in weights.items():
        key = _renamed(key, saved["name"], adapters_support.LANGUAGE)
        # adapters keys weights as the saving model named them: with the base prefix (bert.) or without.
        if headless and key.startswith(prefix):
            key = key[len(prefix) :]
        elif not headless and not key.startswith(prefix):
            key = prefix + key
        tensors[key] = value.detach().cpu().contiguous().clone()
    adapters_support.load(model, adapters_support.LANGUAGE, saved["config"], tensors)  # refuses a mismatch
    provenance = {
        **pack.provenance,
        "adapter": {
            "source": str(adapter_path),
            "name": saved["name"],
            "saved_by": saved.get("version"),
            "model_class": saved.get("model_class"),
        },
    }
    return dataclasses.replace(pack, adapter_config=saved["config"], adapter_tensors=tensors, provenance=provenance)
