"""Generated families for two classes of hostile artifacts, shared by ``tests/reliability/test_reliability_bounds.py``
and ``benchmarks/reliability.py``:

- ``compose_shapes``: artifacts whose hashes, configs and tensors are each in order but that do not fit
  together (task heads against the task's labels, body deltas, special rows, position tables, a body
  config asking for gigabytes or millions of layers). ``verify --load`` passes exactly when
  ``compose`` succeeds, and a compose that fails does so before any model is built for real.
- ``json_bounds``: configs, tokenizer files and safetensors headers too large, with too many objects
  and lists, or nested too deeply: refused with an honest message ("too large", "objects and lists",
  "nested"), never "not valid JSON", before they are parsed or hashed.

Each case runs through ``reliability_kit.outcome`` (time bound, one-line message, counted per class).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import struct
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embswap.io as eio
from embswap import Body, LanguagePack, Store, TaskModule
from embswap.compose import compose
from embswap.errors import EmbswapError
from embswap.safety import MAX_CONFIG_BYTES, MAX_CONFIG_CONTAINERS, MAX_JSON_DEPTH, MAX_TENSORS
from embswap.verify import verify
from tests.helpers import reliability_kit as kit

ecompose = importlib.import_module("embswap.compose")  # the package exports a function of that name


def _settings(max_examples: int, derandomize: bool):
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


# --- class 5: artifacts that pass their own checks but do not fit together ---------------------------


def base_parts(samples: kit.Samples) -> tuple[Body, LanguagePack, TaskModule]:
    """The sample body and pack, and a task with every tensor its model needs, a body delta and special rows."""
    cached = getattr(samples, "_compose_parts", None)
    if cached is None:
        import transformers

        body, pack = Body.from_pretrained(samples.body), LanguagePack.from_pretrained(samples.pack)
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_config(
            body.hf_config(pack.vocab_size, num_labels=3)
        )
        head = {
            k: v.clone() for k, v in model.state_dict().items() if k not in body.tensors and "word_embeddings" not in k
        }
        delta = {name: body.tensors[name] + 0.01 for name in sorted(body.tensors)[:2]}
        task = TaskModule(
            task="classification",
            labels=["a", "b", "c"],
            head=head,
            body_fingerprint=body.fingerprint,
            body_delta=delta,
            special_rows={i: torch.randn(body.embedding_dim) for i in (0, 2)},
        )
        cached = body, pack, task
        object.__setattr__(samples, "_compose_parts", cached)
    return cached


def _resized(tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    shape = list(tensor.shape)
    shape[dim] = size
    return (
        torch.randn(shape, dtype=tensor.dtype) if tensor.is_floating_point() else torch.zeros(shape, dtype=tensor.dtype)
    )


BODY_SIZES = ["intermediate_size", "hidden_size", "num_hidden_layers", "max_position_embeddings", "num_attention_heads",
              "type_vocab_size"]  # fmt: skip


@st.composite
def misfits(draw, parts):
    """(what was changed, body, pack, task): one thing that makes the three not fit, or nothing (the control)."""
    body, pack, task = parts
    kind = draw(st.sampled_from(["head", "labels", "delta", "special_width", "special_id", "positions", "body_config",
                                 "none"]), label="kind")  # fmt: skip
    change = st.integers(-40, 40).filter(bool)
    if kind == "head":
        name = draw(st.sampled_from(sorted(task.head)), label="tensor")
        dim = draw(st.integers(0, task.head[name].dim() - 1), label="dim")
        size = max(0, task.head[name].shape[dim] + draw(change, label="by"))
        task = dataclasses.replace(task, head={**task.head, name: _resized(task.head[name], dim, size)})
        return f"head {name} dim {dim} -> {size}", body, pack, task
    if kind == "labels":
        count = draw(st.integers(2, 8).filter(lambda n: n != len(task.labels)), label="labels")
        return f"{count} labels", body, pack, dataclasses.replace(task, labels=[f"l{i}" for i in range(count)])
    if kind == "delta":
        name = draw(st.sampled_from(sorted(task.body_delta)), label="tensor")
        dim = draw(st.integers(0, task.body_delta[name].dim() - 1), label="dim")
        size = max(0, task.body_delta[name].shape[dim] + draw(change, label="by"))
        delta = {**task.body_delta, name: _resized(task.body_delta[name], dim, size)}
        return f"delta {name} dim {dim} -> {size}", body, pack, dataclasses.replace(task, body_delta=delta)
    if kind == "special_width":
        width = max(0, body.embedding_dim + draw(change, label="by"))
        rows = {token: torch.randn(width) for token in task.special_rows}  # one matrix on disk: one width
        return f"special row width {width}", body, pack, dataclasses.replace(task, special_rows=rows)
    if kind == "special_id":
        token = draw(st.integers(pack.vocab_size, pack.vocab_size + 10**6), label="id")
        rows = {**task.special_rows, token: torch.randn(body.embedding_dim)}
        return f"special row id {token}", body, pack, dataclasses.replace(task, special_rows=rows)
    if kind == "positions":
        length = body.model_config["max_position_embeddings"] + draw(st.integers(-10, 10), label="by")
        table = torch.randn(length, body.embedding_dim)
        return f"position table of {length}", body, dataclasses.replace(pack, position_embeddings=table), task
    if kind == "body_config":
        key = draw(st.sampled_from(BODY_SIZES), label="key")
        value = draw(st.sampled_from([10**9, 10**6, 3, 1, body.model_config.get(key, 1) + 1]), label="value")
        config = {**body.model_config, key: value}
        body = dataclasses.replace(body, model_config=config)
        body.__dict__.pop("fingerprint", None)  # a new config: a new fingerprint, which pack and task record
        pack = dataclasses.replace(pack, body_fingerprint=body.fingerprint)
        task = dataclasses.replace(task, body_fingerprint=body.fingerprint)
        return f"body {key} = {value}", body, pack, task
    return "nothing", body, pack, task


def _real_builds(record: list):
    """Count models built for real (not on the meta device) while composing."""
    original = ecompose._build

    def counting(*args, meta: bool = False, **kwargs):
        if not meta:
            record.append(1)
        return original(*args, meta=meta, **kwargs)

    return original, counting


def fuzz_compose_shapes(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    parts = base_parts(samples)

    @_settings(max_examples, derandomize)
    @given(case=misfits(parts))
    def run(case):
        what, body, pack, task = case
        kit._current_damage[:] = [what]
        with tempfile.TemporaryDirectory(dir=samples.root) as scratch:
            store = Store(Path(scratch) / "store")
            store.save_body(body)
            store.save_pack(pack)
            store.save_task("t", task)
            rows = verify(store.path, load=True)
            verified = not any(row.failed for row in rows)
            builds: list = []
            original, counting = _real_builds(builds)
            ecompose._build = counting
            try:
                result = kit.outcome(
                    lambda: compose(store.body_path, store.pack_path("en"), store.task_path("t")), "compose_shapes"
                )
            finally:
                ecompose._build = original
            assert verified == (result == "ok"), (what, result, [r.reason for r in rows if r.failed])
            if result != "ok":
                assert builds == [], f"{what}: a model was built for real before {result}"
            if what == "nothing":
                assert result == "ok"

    run()


# --- class 6: JSON and headers bounded by bytes and by structure -------------------------------------


def _nested(depth: int, opener: str) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if opener == "{" else ("[" * depth + "]" * depth)


@st.composite
def oversized_json(draw, where: str):
    """(JSON text, the word its refusal must use) for a config (or tokenizer_config.json) or a safetensors header."""
    most = 3 * MAX_TENSORS + 2 if where == "header" else MAX_CONFIG_CONTAINERS
    kind = draw(st.sampled_from(["bytes", "containers", "depth", "strings"]), label="kind")
    if kind == "bytes":  # valid JSON, just too large: a long string or a long list of numbers
        extra = draw(st.integers(1, 5000), label="extra")
        if draw(st.booleans(), label="string"):
            return json.dumps({"kind": "language_pack", "x": "a" * (MAX_CONFIG_BYTES + extra)}), "too large"
        return "[" + ",".join(["1"] * ((MAX_CONFIG_BYTES + extra) // 2 + 1)) + "]", "too large"
    if kind == "containers":
        unit = draw(st.sampled_from(["{}", "[]", '{"a":[]}', "[{}]"]), label="unit")
        per = unit.count("{") + unit.count("[")
        count = most // per + draw(st.integers(1, 1000), label="extra")
        return '{"kind":"language_pack","x":[' + ",".join([unit] * count) + "]}", "objects and lists"
    if kind == "depth":
        depth = MAX_JSON_DEPTH + draw(st.integers(1, 5000), label="extra")
        return _nested(depth, draw(st.sampled_from(["{", "["]), label="opener")), "nested"
    # brackets inside strings are not structure: such a config is not refused for them
    count = draw(st.integers(most, most * 3), label="brackets")
    return json.dumps({"kind": "language_pack", "x": "[{" * (count // 2)}), None


def fuzz_json_bounds(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """A pack's config.json, tokenizer_config.json or safetensors header over a bound: refused in the
    bound's own words ("too large", "objects and lists", "nested"), never as "not valid JSON", before
    the text is parsed, and a header before the file is hashed. Brackets inside strings are no structure."""

    @_settings(max_examples, derandomize)
    @given(data=st.data())
    def run(data):
        where = data.draw(st.sampled_from(["config", "tokenizer_config", "header"]), label="where")
        text, word = data.draw(oversized_json(where), label="json")
        kit._current_damage[:] = [f"{where}: {text[:60]}"]
        with tempfile.TemporaryDirectory(dir=samples.root) as scratch:
            folder = Path(scratch) / "pack"
            shutil.copytree(samples.pack, folder)
            if where == "config":
                (folder / "config.json").write_text(text)
            elif where == "tokenizer_config":
                (folder / "tokenizer" / "tokenizer_config.json").write_text(text)
                rehash(folder)
            else:
                raw = text.encode()
                (folder / "embeddings.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
                rehash(folder)
            hashed, parsed, errors = [], [], []
            original_hash, original_loads = eio.file_sha256, json.loads

            def watched_hash(path):
                hashed.append(str(path))
                return original_hash(path)

            def watched_loads(s, *args, **kwargs):
                if len(s) > 100_000:  # the sample's own files are a few KB
                    parsed.append(len(s))
                return original_loads(s, *args, **kwargs)

            def load():
                try:
                    LanguagePack.from_pretrained(folder)
                except EmbswapError as err:
                    errors.append(str(err))
                    raise

            eio.file_sha256, json.loads = watched_hash, watched_loads
            try:
                result = kit.outcome(load, "json_bounds")
            finally:
                eio.file_sha256, json.loads = original_hash, original_loads
            if where == "header":
                assert not any(h.endswith(".safetensors") for h in hashed), "hashed before the header was checked"
            if word is None:  # brackets in strings: whatever else is wrong, not refused for structure
                assert not errors or not any(w in errors[0] for w in ("objects and lists", "nested")), errors
                return
            assert result != "ok", (where, word)
            assert "not valid JSON" not in errors[0], errors[0]
            if where == "header" and word == "too large":
                return  # within the header's own 100 MB bound: parsed, then refused as no header
            assert word in errors[0], (word, errors[0])
            assert not parsed, f"{where}: {parsed[0]} characters parsed before the refusal"

    run()


def rehash(folder: Path) -> None:
    """Record the current SHA-256 of every listed file, as an author who altered one would."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["files"] = {name: eio.file_sha256(folder / name) for name in config["files"]}
    config_path.write_text(json.dumps(config))


def many_tensors_header(count: int = MAX_TENSORS + 1) -> bytes:
    """A safetensors file declaring ``count`` empty tensors (valid layout, too many entries)."""
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


FAMILIES = {
    "compose_shapes": fuzz_compose_shapes,
    "json_bounds": fuzz_json_bounds,
}
