"""Sentence embeddings: the task module of a head-less encoder is its pooling.

Reads pooling from a sentence-transformers folder (``modules.json``, ``1_Pooling/config.json``),
embeds text with any body + pack, scores cross-lingual retrieval, and exports a folder that
``sentence_transformers.SentenceTransformer`` and plain transformers both load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..artifacts import Body, LanguagePack, TaskModule
from ..compose import compose, write_export
from ..data.parallel import validate_pairs
from ..errors import DataError
from ..pooling import DEFAULT_POOLING, pool
from ..pooling import ST_MODES as _ST_MODES
from ..pooling import fitted_length as _fitted_length


def read_pooling(folder: str | os.PathLike) -> dict:
    """Pooling settings of a sentence-transformers folder; mean pooling when the folder has none."""
    folder = Path(folder)
    modules_path = folder / "modules.json"
    if not modules_path.is_file():
        return dict(DEFAULT_POOLING)
    modules = json.loads(modules_path.read_text(encoding="utf-8"))
    settings = dict(DEFAULT_POOLING, normalize=False)
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            config = json.loads((folder / module["path"] / "config.json").read_text(encoding="utf-8"))
            modes = [mode for key, mode in _ST_MODES.items() if config.get(key)]
            if len(modes) != 1:
                raise DataError(
                    f"{folder}: pooling {config} combines several modes; embswap supports one of mean/cls/max"
                )
            settings["mode"] = modes[0]
        elif kind.endswith("Normalize"):
            settings["normalize"] = True
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        settings["max_length"] = int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return settings


def sentence_task(body: Body, pooling: dict | None = None, source: str = "") -> TaskModule:
    """A sentence-embedding task module: no head, no body change, just how to pool."""
    return TaskModule(
        task="sentence-embedding",
        labels=[],
        head={},
        body_fingerprint=body.fingerprint,
        mode="frozen",
        settings=dict(pooling or DEFAULT_POOLING),
        provenance={"source": source} if source else {},
    )


@torch.no_grad()
def encode(model, tokenizer, texts: Sequence[str], settings: dict | None = None, batch_size: int = 64) -> torch.Tensor:
    """Sentence vectors [len(texts), hidden] with the task's pooling (and normalisation)."""
    settings = dict(DEFAULT_POOLING, **(settings or {}))
    max_length = _fitted_length(model, settings["max_length"])
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-grouped batches pad little
    out = torch.empty(0)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in index], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        hidden = model.base_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        vectors = pool(hidden, batch["attention_mask"], settings["mode"]).float()
        vectors = (F.normalize(vectors, dim=-1) if settings["normalize"] else vectors).cpu()
        if out.numel() == 0:
            out = torch.empty(len(texts), vectors.shape[1])
        out[index] = vectors  # back in the order of ``texts``
    return out


def retrieval_scores(source: torch.Tensor, target: torch.Tensor) -> dict:
    """Top-1 accuracy both ways and MRR for aligned rows (row i of source translates row i of target)."""
    if source.shape != target.shape or source.shape[0] == 0:
        raise DataError(
            f"retrieval needs aligned, non-empty vectors; got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    sims = F.normalize(source, dim=-1) @ F.normalize(target, dim=-1).T
    gold = torch.arange(sims.shape[0])

    def direction(matrix: torch.Tensor) -> tuple[float, float]:
        gold_scores = matrix[gold, gold].unsqueeze(1)
        ranks = (matrix > gold_scores).sum(1) + 1
        return (ranks == 1).float().mean().item(), (1.0 / ranks.float()).mean().item()

    top1_st, mrr_st = direction(sims)
    top1_ts, mrr_ts = direction(sims.T)
    return {
        "top1_source_to_target": top1_st,
        "top1_target_to_source": top1_ts,
        "mrr_source_to_target": mrr_st,
        "mrr_target_to_source": mrr_ts,
        "n": int(sims.shape[0]),
    }


def evaluate_retrieval(body, source_pack, target_pack, task: TaskModule, pairs: Sequence[dict]) -> dict:
    """Embed the source side with the L1 pack and the target side with the L2 pack; score retrieval."""
    src_model, src_tok = compose(body, source_pack, task)
    tgt_model, tgt_tok = compose(body, target_pack, task)
    source = encode(src_model, src_tok, [p["source"] for p in pairs], task.settings)
    target = encode(tgt_model, tgt_tok, [p["target"] for p in pairs], task.settings)
    scores = retrieval_scores(target, source)  # queries: L2 sentences; candidates: their L1 translations
    return {
        "top1_l2_to_l1": scores["top1_source_to_target"],
        "top1_l1_to_l2": scores["top1_target_to_source"],
        "mrr_l2_to_l1": scores["mrr_source_to_target"],
        "mrr_l1_to_l2": scores["mrr_target_to_source"],
        "n": scores["n"],
    }


def _percent(scores: dict) -> dict:
    return {k: (v if k == "n" else 100.0 * v) for k, v in scores.items()}


def untrained_pack(
    body: Body, pack: LanguagePack, reference_pack: LanguagePack | None
) -> tuple[LanguagePack | None, str]:
    """``(pack as its init left it, init method)`` rebuilt from its provenance, or ``(None, why not)``."""
    from .. import init

    provenance = pack.provenance or {}
    method = (provenance.get("init") or {}).get("method")
    if method is None:
        return None, f"pack {pack.language!r} records no init (it was not trained by `embswap transfer`)"
    if method in ("dictionary", "aligned"):
        return None, f"init {method!r} needs its word list or parallel text, which the pack does not store"
    uses_reference = (provenance["init"].get("reference_pack") is not None) or method != "random"
    if uses_reference and reference_pack is None:
        return None, f"init {method!r} copied rows from a reference pack; pass it (--reference-pack)"
    control = init.untrained_pack(
        body,
        pack.tokenizer,
        pack.language,
        method,
        seed=int(provenance.get("seed", 0)),
        reference_pack=reference_pack if uses_reference else None,
    )
    return control, method


def retrieval_report(
    body,
    pack,
    pairs: Sequence[dict],
    *,
    reference_pack,
    task: TaskModule | None = None,
    ceiling_pairs: Sequence[dict] | None = None,
) -> dict:
    """Retrieval of ``pack`` (L2 side) against ``reference_pack`` (L1 side), with its controls.

    Rows (metrics in percent, as :func:`evaluate_retrieval` names them): ``pack``; ``untrained_pack``
    (same init, no training; skipped with the reason in ``notes`` when the init cannot be rebuilt);
    ``raw_text`` (the original model, body + L1 pack, reading the raw L2 text); and, given L1
    paraphrase pairs, ``ceiling`` (L1 <-> L1 through the same model). ``task`` holds the pooling
    (default: mean, normalised).
    """
    from ..artifacts import check_compatible
    from ..compose import as_artifact

    body = as_artifact(body, Body)
    pack, reference = as_artifact(pack, LanguagePack), as_artifact(reference_pack, LanguagePack)
    check_compatible(body, pack)
    check_compatible(body, reference, name=f"reference pack {reference.language!r}")
    task = task if task is not None else sentence_task(body)
    pairs = validate_pairs(pairs, "retrieval pairs")
    report = {
        "language": pack.language,
        "reference_language": reference.language,
        "n": len(pairs),
        "notes": [],
        "results": {"pack": _percent(evaluate_retrieval(body, reference, pack, task, pairs))},
    }
    untrained, why = untrained_pack(body, pack, reference)
    if untrained is None:
        report["notes"].append(f"no untrained-pack control: {why}")
    else:
        report["untrained_init"] = why
        report["results"]["untrained_pack"] = _percent(evaluate_retrieval(body, reference, untrained, task, pairs))
    report["results"]["raw_text"] = _percent(evaluate_retrieval(body, reference, reference, task, pairs))
    if ceiling_pairs is not None:
        ceiling_pairs = validate_pairs(ceiling_pairs, "ceiling pairs")
        report["results"]["ceiling"] = _percent(evaluate_retrieval(body, reference, reference, task, ceiling_pairs))
    return report


def export_sentence_transformer(body, pack, task: TaskModule, output: str | os.PathLike) -> Path:
    """A folder that SentenceTransformer(output) and transformers.AutoModel both load."""
    return write_export(body, pack, task, output)
