"""The only module that knows where each model family keeps its embeddings and special tokens.

Every other module asks this one. Adding a family is one ``register_family`` call plus a test.
The word-embedding matrix and the MLM output layer are found through the model's own
``get_input_embeddings`` / ``get_output_embeddings``; only what those APIs do not expose
(position embeddings, embedding width, default special-token strings) is declared here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import (
    CONFIG_MAPPING,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from .errors import DataError, EmbswapError, UnsupportedModelError

TASK_TYPES = ("classification", "pair-classification", "qa", "sentence-embedding")

_AUTO_CLASSES = {
    None: AutoModelForMaskedLM,
    "mlm": AutoModelForMaskedLM,
    "classification": AutoModelForSequenceClassification,
    "pair-classification": AutoModelForSequenceClassification,
    "qa": AutoModelForQuestionAnswering,
    "sentence-embedding": AutoModel,
    "encoder": AutoModel,
}


@dataclass(frozen=True)
class Family:
    """How one model family is laid out.

    ``position_embeddings`` is an attribute path below the base model (None where positions are
    not a learned table, e.g. rotary). ``special_tokens`` are the default strings per role for
    tokenizers trained from scratch; ``tokenizer_model`` is the family's usual subword model.
    """

    name: str
    model_types: tuple[str, ...]
    position_embeddings: str | None
    special_tokens: dict[str, str]
    tokenizer_model: str = "wordpiece"
    has_token_types: bool = True
    # RoBERTa-style models count positions from pad_token_id + 1.
    position_offset_from_pad: bool = False
    # How a sentence pair is framed: "bert" = [CLS] A [SEP] B [SEP]; "roberta" = <s> A </s></s> B </s>.
    pair_style: str = "bert"
    extra: dict = field(default_factory=dict)
    # (masked LM, hidden states [..., hidden]) -> logits [..., vocab]: the family's MLM head on
    # any selection of positions, so training can score only the masked ones.
    mlm_head: Callable[[PreTrainedModel, torch.Tensor], torch.Tensor] | None = None


_BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_ROBERTA_SPECIALS = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}

_FAMILIES: dict[str, Family] = {}


def _bert_mlm_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    return model.cls(hidden)


def _roberta_mlm_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    return model.lm_head(hidden)


def _distilbert_mlm_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    hidden = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))
    return model.vocab_projector(hidden)


def _electra_mlm_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    return model.generator_lm_head(model.generator_predictions(hidden))


def _deberta_v2_mlm_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    if model.legacy:
        return model.cls(hidden)
    return model.lm_predictions(hidden, model.deberta.embeddings.word_embeddings)


def register_family(family: Family) -> Family:
    """Add a family to the registry (also usable by plugins)."""
    _FAMILIES[family.name] = family
    return family


register_family(Family("bert", ("bert",), "embeddings.position_embeddings", _BERT_SPECIALS, mlm_head=_bert_mlm_head))
register_family(
    Family(
        "roberta",
        ("roberta", "xlm-roberta", "camembert"),
        "embeddings.position_embeddings",
        _ROBERTA_SPECIALS,
        tokenizer_model="bpe",
        position_offset_from_pad=True,
        pair_style="roberta",
        mlm_head=_roberta_mlm_head,
    )
)
register_family(
    Family(
        "distilbert",
        ("distilbert",),
        "embeddings.position_embeddings",
        _BERT_SPECIALS,
        has_token_types=False,
        mlm_head=_distilbert_mlm_head,
    )
)
register_family(
    Family("electra", ("electra",), "embeddings.position_embeddings", _BERT_SPECIALS, mlm_head=_electra_mlm_head)
)
register_family(
    Family(
        "deberta-v2",
        ("deberta-v2",),
        "embeddings.position_embeddings",
        _BERT_SPECIALS,
        tokenizer_model="unigram",
        mlm_head=_deberta_v2_mlm_head,
    )
)


def supported_families() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise UnsupportedModelError(
            f"unknown model family {name!r}; supported families: {', '.join(supported_families())}"
        )
    return _FAMILIES[name]


def family_of(config: PretrainedConfig) -> Family:
    """The family of a transformers config, or a one-line error naming the supported ones."""
    model_type = getattr(config, "model_type", None)
    for family in _FAMILIES.values():
        if model_type in family.model_types:
            return family
    types = sorted(t for f in _FAMILIES.values() for t in f.model_types)
    raise UnsupportedModelError(
        f"model type {model_type!r} is not supported; supported model types: {', '.join(types)}"
    )


def auto_class(task: str | None):
    """The transformers Auto class that builds a model for ``task`` (None: the masked LM)."""
    try:
        return _AUTO_CLASSES[task]
    except KeyError:
        raise EmbswapError(f"unknown task type {task!r}; expected one of: {', '.join(TASK_TYPES)}") from None


def without_pooler(task: str | None, config, tensor_names) -> dict:
    """Constructor kwargs that leave the pooler out of ``task``'s model when the body has none.

    A headless BERT / RoBERTa / XLM-R model adds a pooler that a body split from a masked LM never
    had; building it would leave weights no artifact provides. ``{}`` for other tasks, for bodies
    with a pooler (``bert.pooler.dense.weight``, ...) and for families without one.
    """
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    if task not in ("sentence-embedding", "encoder") or type(config) not in MODEL_MAPPING:
        return {}
    if any(name.startswith("pooler.") or ".pooler." in name for name in tensor_names):
        return {}
    cls = MODEL_MAPPING[type(config)]
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}


def word_embeddings(model: PreTrainedModel) -> nn.Embedding:
    return model.get_input_embeddings()


def output_layer(model: PreTrainedModel) -> nn.Linear | None:
    """The vocabulary projection of a masked LM (tied to the word embeddings), None for others."""
    get = getattr(model, "get_output_embeddings", None)
    return get() if get is not None else None


def position_embeddings(model: PreTrainedModel) -> nn.Embedding | None:
    family = family_of(model.config)
    if family.position_embeddings is None:
        return None
    module: nn.Module = model.base_model
    for attr in family.position_embeddings.split("."):
        module = getattr(module, attr, None)
        if module is None:
            return None
    return module


def token_type_embeddings(model: PreTrainedModel) -> nn.Embedding | None:
    """The segment (token-type) table, None where the family or config has none (DistilBERT, DeBERTa-v2)."""
    family = family_of(model.config)
    if not family.has_token_types:
        return None
    module: nn.Module | None = model.base_model
    for attr in family.extra.get("token_type_embeddings", "embeddings.token_type_embeddings").split("."):
        module = getattr(module, attr, None)
    return module if isinstance(module, nn.Embedding) else None


def pack_parameter_names(model: PreTrainedModel) -> dict[str, list[str]]:
    """State-dict names that alias the pack's tensors, found by identity, not by spelling.

    Returns {"word_embeddings": [...], "output_bias": [...], "position_embeddings": [...]};
    tied parameters appear under several names (e.g. BERT's decoder.bias is predictions.bias).
    """
    targets: dict[str, torch.Tensor | None] = {
        "word_embeddings": word_embeddings(model).weight,
        "output_bias": None,
        "position_embeddings": None,
    }
    out = output_layer(model)
    if out is not None and out.bias is not None:
        targets["output_bias"] = out.bias
    pos = position_embeddings(model)
    if pos is not None:
        targets["position_embeddings"] = pos.weight
    names: dict[str, list[str]] = {key: [] for key in targets}
    for name, tensor in model.state_dict(keep_vars=True).items():
        for key, target in targets.items():
            if target is not None and tensor is target:
                names[key].append(name)
    return names


def mlm_head_logits(model: PreTrainedModel, hidden_states: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits of a masked LM's head for ``hidden_states`` [..., hidden] -> [..., vocab].

    Applies exactly what the model's own forward applies after the encoder, so scoring only the
    masked positions gives the same numbers as full-sequence logits at those positions.
    """
    family = family_of(model.config)
    if family.mlm_head is None or model is model.base_model:
        raise UnsupportedModelError(
            f"a {type(model).__name__} has no masked-LM head embswap can call; build the *ForMaskedLM model of "
            f"the {family.name} family (head-less bodies train with the align objective)"
        )
    return family.mlm_head(model, hidden_states)


# The input length a run uses when the body reads longer ones: the cost of a step grows with it.
DEFAULT_SEQ_LEN = 128


def max_input_tokens(config: PretrainedConfig | Mapping) -> int | None:
    """The longest input, special tokens included, a model with ``config`` reads (None: no bound).

    ``config`` is a transformers config or its dict (``Body.model_config``). A learned position table
    of N rows reads N tokens; RoBERTa-style families number positions from ``pad_token_id + 1``, so
    roberta-base's 514 rows read 512 tokens.
    """
    get = config.get if isinstance(config, Mapping) else (lambda key: getattr(config, key, None))
    positions = get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    model_type = get("model_type")
    family = next((f for f in _FAMILIES.values() if model_type in f.model_types), None)
    if family is not None and family.position_offset_from_pad:
        positions -= int(get("pad_token_id") or 0) + 1
    return positions


def resolve_seq_len(
    config: PretrainedConfig | Mapping, seq_len: int | None = None, *, recorded: int | None = None
) -> tuple[int, str]:
    """``(length, why)`` of a run on a body with ``config``.

    An explicit ``seq_len`` is kept, or refused with a one-line error when the body cannot read it.
    Without one: the task module's ``recorded`` length, else :data:`DEFAULT_SEQ_LEN`, cut to what the
    body reads (a body pretrained with ``--seq-len 64`` gets 64).
    """
    limit = max_input_tokens(config)
    if seq_len is not None:
        if limit is not None and seq_len > limit:
            raise DataError(
                f"seq_len {seq_len} is longer than the body's {limit} positions; use --seq-len {limit} or less "
                "(or leave it out: the default fits the body)"
            )
        return int(seq_len), "given"
    length, why = (int(recorded), "the task module's") if recorded is not None else (DEFAULT_SEQ_LEN, "default")
    if limit is not None and limit < length:
        return limit, f"the body's {limit} positions"
    return length, why


def embedding_dim(model: PreTrainedModel) -> int:
    return word_embeddings(model).weight.shape[1]


def special_token_ids(tokenizer, family: Family) -> dict[str, int]:
    """Role -> id for the five shared special tokens, from a transformers tokenizer."""
    ids: dict[str, int] = {}
    for role in family.special_tokens:
        token_id = getattr(tokenizer, f"{role}_token_id", None)
        if token_id is None:
            raise UnsupportedModelError(
                f"the tokenizer has no {role} token; the {family.name} family needs "
                f"{', '.join(family.special_tokens.values())} (train it with `embswap tokenizer train`)"
            )
        ids[role] = int(token_id)
    return ids


# The architecture sizes a fresh model is built from (pretraining from scratch).
MODEL_DIMS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def pretrainable_families() -> list[str]:
    """Families whose config takes the standard sizes, so :func:`new_config` can build them."""
    needed = (*MODEL_DIMS, "max_position_embeddings")
    return [
        name
        for name, fam in sorted(_FAMILIES.items())
        if all(key in inspect.signature(CONFIG_MAPPING[fam.model_types[0]].__init__).parameters for key in needed)
    ]


def new_config(
    family: str, dims: dict[str, int], vocab_size: int, special_ids: dict[str, int], max_positions: int
) -> PretrainedConfig:
    """A transformers config for a randomly initialised model of ``family``.

    ``dims`` gives MODEL_DIMS; ``max_positions`` is the longest input (special tokens included) the
    model must read. Families that count positions from ``pad_token_id + 1`` (RoBERTa) get that many
    extra rows, as roberta-base has 514 for 512 tokens.
    """
    fam = get_family(family)
    if fam.name not in pretrainable_families():
        raise UnsupportedModelError(
            f"a fresh {fam.name} model cannot be built from a preset (its config does not take "
            f"{', '.join(MODEL_DIMS)}); pretrain one of: {', '.join(pretrainable_families())}"
        )
    config_class = CONFIG_MAPPING[fam.model_types[0]]
    unknown = sorted(set(dims) - set(MODEL_DIMS))
    if unknown:
        raise UnsupportedModelError(f"unknown model sizes {unknown}; a preset gives {', '.join(MODEL_DIMS)}")
    offset = special_ids["pad"] + 1 if fam.position_offset_from_pad else 0
    return config_class(
        vocab_size=vocab_size,
        max_position_embeddings=max_positions + offset,
        pad_token_id=special_ids["pad"],
        bos_token_id=special_ids.get("cls"),
        eos_token_id=special_ids.get("sep"),
        **dims,
    )
