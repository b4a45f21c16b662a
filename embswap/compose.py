"""The composer: body + language pack (+ task module) -> an ordinary transformers model.

The result is a plain ``*ForMaskedLM`` / ``*ForSequenceClassification`` / ``*ForQuestionAnswering``
(or bare encoder for sentence embeddings) with the output layer tied to the pack's matrix, so it
can be saved and loaded by transformers with no embswap installed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_utils import no_init_weights

from . import adapters_support
from .architectures import auto_class, pack_parameter_names, without_pooler
from .artifacts import Body, LanguagePack, TaskModule, check_compatible
from .errors import CorruptArtifactError, EmbswapError, IncompatibleArtifactError
from .io import atomic_folder
from .outputs import MODEL, check_output, mark_export
from .pooling import write_sentence_transformer_files

LANGUAGE_ADAPTER = "language"
TASK_ADAPTER = "task"


def as_artifact(value, cls, *, verify: bool = True):
    """Accept an artifact object or a path / Hub id of one (``verify``: check its file hashes)."""
    if isinstance(value, cls):
        return value
    return cls.from_pretrained(value, verify=verify)


def build_empty_model(
    body: Body, vocab_size: int, task: TaskModule | None = None, *, pack: LanguagePack | None = None
) -> PreTrainedModel:
    """The right transformers class for body (+task), with weights allocated but not initialised.

    First the same model is built on the meta device (no storage) and every tensor the body, the
    task and (when given) ``pack`` will load is checked against it, so a config that asks for
    gigabytes, or a tensor of the wrong shape, fails before anything is allocated.
    """
    check_composable(body, pack, task, vocab_size=vocab_size)
    return _build(body, vocab_size, task)


def _build(body: Body, vocab_size: int, task: TaskModule | None, *, meta: bool = False) -> PreTrainedModel:
    overrides: dict[str, dict] = {}
    task_type = task.task if task is not None else ("encoder" if body.head == "none" else None)
    if task is not None and task.task in ("classification", "pair-classification"):
        overrides["id2label"] = dict(enumerate(task.labels))
        overrides["label2id"] = {label: i for i, label in enumerate(task.labels)}
    config = body.hf_config(vocab_size, **overrides)
    with no_init_weights(), torch.device("meta") if meta else contextlib.nullcontext():
        model = auto_class(task_type).from_config(config, **without_pooler(task_type, config, body.tensors))
    model.tie_weights()  # skipped under no_init_weights; the pack's matrix must feed both ends
    return model


def check_composable(
    body: Body, pack: LanguagePack | None, task: TaskModule | None = None, *, vocab_size: int | None = None
) -> None:
    """Every tensor that composing body + pack (+ task) loads has the shape the body's config implies.

    Checked on a model built on the meta device, so nothing is allocated: task head tensors against
    the task's labels and the body's width, body deltas and special rows of the body's width,
    position tables of the body's length, the body's own tensors against its config (a config
    asking for a huge ``intermediate_size`` or millions of layers fails here). Without ``pack``,
    only the body's and the task's tensors are checked (the vocabulary is ``vocab_size``).
    """
    layers = getattr(body.hf_config(vocab_size=1), "num_hidden_layers", None)
    if isinstance(layers, int) and layers > len(
        body.tensors
    ):  # each layer holds tensors: building them would be wasted
        raise CorruptArtifactError(
            f"body {body.short_fingerprint}: its model_config asks for {layers} layers but the body holds only "
            f"{len(body.tensors)} tensors; the config and the weights do not belong together: save the body again"
        )
    vocab = pack.vocab_size if pack is not None else vocab_size
    if vocab is None:
        raise TypeError("check_composable needs a pack or vocab_size; got neither")
    try:
        model = _build(body, vocab, task, meta=True)
    except EmbswapError:
        raise
    except Exception as err:  # transformers raises many kinds on sizes it cannot build
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CorruptArtifactError(
            f"body {body.short_fingerprint}: its model_config does not build a {body.family} model ({first}); "
            "save the body again"
        ) from None
    _sources(model, body, pack, task)


def special_rows_applied(pack: LanguagePack, task: TaskModule | None) -> torch.Tensor:
    """The pack's matrix with the task's fine-tuned special-token rows written in."""
    if task is None or not task.special_rows:
        return pack.word_embeddings
    _check_special_rows(pack, task)
    matrix = pack.word_embeddings.clone()
    for token_id, row in task.special_rows.items():
        matrix[token_id] = row
    return matrix


def _check_special_rows(pack: LanguagePack, task: TaskModule | None) -> None:
    rows, width = pack.word_embeddings.shape
    if task is None:
        return
    for token_id, row in task.special_rows.items():
        if not 0 <= token_id < rows:
            raise IncompatibleArtifactError(
                f"task {task.task!r} has a special-token row for id {token_id}, outside pack {pack.language!r}'s vocabulary"
            )
        if tuple(row.shape) != (width,):
            raise IncompatibleArtifactError(
                f"task {task.task!r} has a special-token row of shape {tuple(row.shape)} for id {token_id}, but pack "
                f"{pack.language!r}'s rows have {width} values; the task was trained for another body"
            )


def composed_state_dict(model: PreTrainedModel, body: Body, pack: LanguagePack, task: TaskModule | None) -> dict:
    """Every tensor ``model`` needs, drawn from the pack, the task (head, body delta) and the body."""
    return {name: tensor for name, (tensor, _) in _sources(model, body, pack, task).items()}


def _on_meta(model: PreTrainedModel) -> bool:
    return next(iter(model.state_dict().values())).is_meta


def _sources(model: PreTrainedModel, body: Body, pack: LanguagePack | None, task: TaskModule | None) -> dict:
    """``{name: (tensor, who gives it)}`` for every tensor of ``model``, each checked against the shape
    the model has there; without ``pack``, the pack's names are left out (and not checked)."""
    aliases = pack_parameter_names(model)
    from_pack: dict[str, torch.Tensor | None] = {}
    if pack is not None:
        # on the meta device only checked: a copy of the matrix would be the largest allocation of a check
        _check_special_rows(pack, task)
        matrix = pack.word_embeddings if _on_meta(model) else special_rows_applied(pack, task)
        for name in aliases["word_embeddings"]:
            from_pack[name] = matrix
        for name in aliases["output_bias"]:
            from_pack[name] = pack.output_bias
        if pack.position_embeddings is not None:
            for name in aliases["position_embeddings"]:
                from_pack[name] = pack.position_embeddings
    skipped = set() if pack is not None else {*aliases["word_embeddings"], *aliases["output_bias"]}
    prefix = model.base_model_prefix
    headless = model is model.base_model
    delta = task.body_delta if task is not None else {}
    head = task.head if task is not None else {}
    state: dict[str, tuple[torch.Tensor, str]] = {}
    used_head = set()
    expected = model.state_dict()
    for name in expected:
        key = f"{prefix}.{name}" if headless else name
        # from_pack is filled only from a pack, head and delta only from a task
        if pack is not None and name in from_pack:
            given = from_pack[name]
            if given is None:
                raise IncompatibleArtifactError(
                    f"pack {pack.language!r} has no MLM output bias, which the masked-LM model needs; "
                    "compose it with a task, or train the pack on a body with an MLM head"
                )
            state[name] = given, f"pack {pack.language!r}"
        elif task is not None and key in head:
            state[name] = head[key], f"task {task.task!r} (its head)"
            used_head.add(key)
        elif task is not None and key in delta:
            state[name] = delta[key], f"task {task.task!r} (its body changes)"
        elif key in body.tensors:
            state[name] = body.tensors[key], "the body"
        elif name in skipped or (pack is None and name in aliases["position_embeddings"]):
            continue
        else:
            raise IncompatibleArtifactError(
                f"no artifact provides {key!r} for a {type(model).__name__}; the task module or body is incomplete"
            )
        tensor, source = state[name]
        if tuple(tensor.shape) != tuple(expected[name].shape):
            error = CorruptArtifactError if source == "the body" else IncompatibleArtifactError
            described = "the body's config" + (
                f" and the task's {len(task.labels)} labels" if task is not None and task.labels else ""
            )
            raise error(
                f"{source} gives {key!r} the shape {tuple(tensor.shape)}, but the {type(model).__name__} that {described} "
                f"describe needs {tuple(expected[name].shape)}; the artifacts do not fit together: use the ones trained "
                "together, or save them again"
            )
    unused = sorted(set(head) - used_head)
    if task is not None and unused:
        raise IncompatibleArtifactError(
            f"task {task.task!r} holds tensors a {type(model).__name__} does not have ({unused[0]}, ...); "
            "it was trained for another model family"
        )
    return state


def load_composed(model: PreTrainedModel, state: dict[str, torch.Tensor], *, take_over: bool = False) -> None:
    """Load ``state`` (which names every tensor of ``model``) into ``model``.

    ``take_over``: the tensors belong to nobody else, so the model adopts them instead of copying
    (safetensors reads are memory-mapped: the weights are then read from disk once, on use). Only
    when every tensor already has its parameter's dtype, shape and device, so the values are the
    same either way; names that shared one tensor (tied weights) share one parameter afterwards.
    """
    if not (take_over and _adopt(model, state)):
        model.load_state_dict(state, strict=True)


def _adopt(model: PreTrainedModel, state: dict[str, torch.Tensor]) -> bool:
    """Make ``state``'s tensors the model's parameters and buffers; False, changing nothing, unless
    ``state`` names exactly the model's state with the same dtypes, shapes and devices.

    (What ``load_state_dict(assign=True)`` does, without its walk over every module: 10x faster.)
    """
    modules = dict(model.named_modules())
    slots: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
    for name, tensor in state.items():
        owner, _, attr = name.rpartition(".")
        module = modules.get(owner)
        current = None if module is None else module._parameters.get(attr, module._buffers.get(attr))
        if (
            module is None
            or current is None
            or (current.dtype, current.shape, current.device) != (tensor.dtype, tensor.shape, tensor.device)
        ):
            return False
        slots.append((module, attr, tensor, current))
    if len(slots) != _state_size(modules):
        return False
    adopted: dict[int, nn.Parameter] = {}  # one parameter per tensor: tied names stay tied
    for module, attr, tensor, current in slots:
        if isinstance(current, nn.Parameter):
            module._parameters[attr] = adopted.setdefault(id(tensor), nn.Parameter(tensor, current.requires_grad))
        else:
            module._buffers[attr] = tensor
    return True


def _state_size(modules: dict[str, nn.Module]) -> int:
    """How many names ``state_dict()`` has: parameters and persistent buffers, tied ones under each name."""
    count = 0
    for module in modules.values():
        count += sum(1 for p in module._parameters.values() if p is not None)
        persistent = (b for k, b in module._buffers.items() if k not in module._non_persistent_buffers_set)
        count += sum(1 for b in persistent if b is not None)
    return count


def training_model(body: Body, pack: LanguagePack, *, train_positions: bool = False) -> PreTrainedModel:
    """The masked LM step 2 trains: the pack's tensors on a body that stays frozen.

    The frozen tensors are ``body``'s own, not copies (a second copy of the body would be the
    largest allocation of a run, and nothing writes to frozen tensors); the pack's tensors, and
    the position table with ``train_positions``, are copies that training may update in place.
    """
    model = build_empty_model(body, pack.vocab_size, pack=pack)
    state = composed_state_dict(model, body, pack, None)
    aliases = pack_parameter_names(model)
    trained = [*aliases["word_embeddings"], *aliases["output_bias"]]
    if train_positions or pack.position_embeddings is not None:
        trained += aliases["position_embeddings"]
    copies: dict[int, torch.Tensor] = {}  # one copy per tensor: tied names stay tied
    for name in trained:
        if name in state:
            state[name] = copies.setdefault(id(state[name]), state[name].clone())
    load_composed(model, state, take_over=True)
    return model


def compose(body, pack, task=None, *, device: str | torch.device | None = None, verify: bool = True):
    """Assemble body + pack (+ task) into a live transformers model and return (model, tokenizer).

    ``body``, ``pack`` and ``task`` are artifacts or paths / Hub ids of them. A pack or task trained
    for another body is refused with both fingerprints named. ``verify=False`` skips the SHA-256
    check of the files read from paths (the fingerprint and finiteness checks still run).
    """
    # Artifacts read here from paths belong to this call alone: the model may take over their tensors.
    owned = all(
        not isinstance(value, cls)
        for value, cls in ((body, Body), (pack, LanguagePack), (task, TaskModule))
        if value is not None
    )
    body = as_artifact(body, Body, verify=verify)
    pack = as_artifact(pack, LanguagePack, verify=verify)
    task = as_artifact(task, TaskModule, verify=verify) if task is not None else None
    check_compatible(body, pack)
    if task is not None:
        check_compatible(body, task)
    model = build_empty_model(body, pack.vocab_size, task, pack=pack)
    load_composed(model, composed_state_dict(model, body, pack, task), take_over=owned)
    adapters_support.attach(model, pack, task)
    model.eval()
    if device is not None:
        # transformers declares PreTrainedModel.to with @wraps(nn.Module.to), which types its first argument as the model
        model.to(device)  # type: ignore[arg-type]
    return model, pack.tokenizer


# Files an export adds beside the model and tokenizer, by task type: ``write(model, task settings, folder)``.
EXPORT_FILES: dict[str, Callable[[PreTrainedModel, dict, Path], None]] = {
    "sentence-embedding": write_sentence_transformer_files,  # the pooling, as sentence-transformers reads it
}


def export(body, pack, task, output: str | os.PathLike) -> Path:
    """Write a standard Hugging Face model folder (weights, config, tokenizer), atomically.

    A sentence-embedding task also gets the sentence-transformers files (pooling, normalisation).
    ``output`` may be missing, empty or an earlier export (``outputs.check_output``), never an input.
    """
    check_output(output, MODEL, inputs=(body, pack, task))
    task = as_artifact(task, TaskModule) if task is not None else None
    return write_export(body, pack, task, output)


def write_export(body, pack, task: TaskModule | None, output: str | os.PathLike) -> Path:
    """:func:`export` without the output-path check: the files of ``EXPORT_FILES[task.task]`` included."""
    model, tokenizer = compose(body, pack, task)
    write_files = EXPORT_FILES.get(task.task) if task is not None else None
    if write_files is None:
        adapters_support.refuse_export_with_adapters(model)
    with atomic_folder(output) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if write_files is not None and task is not None:  # (write_files is found only for a task)
            write_files(model, task.settings, tmp)
        mark_export(tmp)
    return Path(output)
