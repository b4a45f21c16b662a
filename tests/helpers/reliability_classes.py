"""Generated families for four classes of hostile artifacts, shared by
``tests/reliability/test_reliability_untrusted_classes.py`` and ``benchmarks/reliability.py``:

- ``tokenizer_files``: tokenizer settings that name a file (any key, any depth) pointing at another
  tokenizer, a FIFO, ``/dev/zero`` or a path that leaves the pack;
- ``token_ids``: tokenizers that can produce an id with no row in the pack's matrix (a vocabulary
  entry, an added or special token, a post-processor template id, a padding id);
- ``names``: language codes and artifact names, random and path-like;
- ``dtype_range``: float64 tensors whose finite values are Inf in float32, in a pack, task or body.

Each case runs through ``reliability_kit.outcome`` (time bound, one-line message, counted per class)
and asserts the exact outcome its class must have.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import io as pyio
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embswap import Body, LanguagePack, Store, TaskModule
from embswap.io import file_sha256
from embswap.names import check_name, is_valid_name
from embswap.verify import verify
from tests.helpers import reliability_kit as kit

TOKENIZER = "tokenizer"
FLOAT32_MAX = torch.finfo(torch.float32).max


def _settings(max_examples: int, derandomize: bool):
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def rehash(folder: Path) -> None:
    """Record the current SHA-256 of every listed file: what an author who altered a file would publish."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["files"] = {name: file_sha256(folder / name) for name in config["files"]}
    config_path.write_text(json.dumps(config))


def failed_rows(folder: Path, *, load: bool) -> list[str]:
    return [f"{row.file}: {row.reason}" for row in verify(folder, load=load) if row.failed]


@contextlib.contextmanager
def opened_files():
    """Record every path opened from Python and every tokenizer.json handed to the Rust tokenizer."""
    import transformers.tokenization_utils_fast as fast

    seen: list[str] = []
    real_open, real_io_open, real_os_open, real_backend = builtins.open, pyio.open, os.open, fast.TokenizerFast

    def track(opener):
        def wrapped(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)):
                seen.append(os.path.realpath(os.fsdecode(file)))
            return opener(file, *args, **kwargs)

        return wrapped

    class Backend:  # TokenizerFast.from_file reads in Rust: record the path it gets
        @staticmethod
        def from_file(path, *args, **kwargs):
            seen.append(os.path.realpath(path))
            return real_backend.from_file(path, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(real_backend, name)

    builtins.open, pyio.open, os.open, fast.TokenizerFast = (
        track(real_open),
        track(real_io_open),
        track(real_os_open),
        Backend,
    )
    try:
        yield seen
    finally:
        builtins.open, pyio.open, os.open, fast.TokenizerFast = real_open, real_io_open, real_os_open, real_backend


# --- class 2: tokenizer settings that name files ---------------------------------------------------

# Keys transformers' loaders read as files, and made-up ones: the rule is generic, not a list.
FILE_KEYS = ["tokenizer_file", "vocab_file", "merges_file", "spm_file", "sentencepiece_model_file", "entity_vocab_file",
             "monolingual_vocab_file", "special_tokens_map_file", "name_or_path", "fast_tokenizer_files", "gguf_file",
             "emoji_file", "my_weights_path", "cache_dir", "source_folder", "Vocab_File"]  # fmt: skip
OTHER_KEYS = ["vocab", "merges", "model", "chat_template", "source_spm", "tokenizer_class", "x"]


@st.composite
def file_setting(draw, outside: dict[str, str]):
    """(tokenizer_config.json with one file-valued setting, what it points at)."""
    target = draw(st.sampled_from(sorted(t for t in outside if t != "pack_tokenizer")), label="target")
    path = outside[target]
    value = draw(
        st.sampled_from(
            [
                path,
                os.path.relpath(path, outside["pack_tokenizer"]),
                f"../../{Path(path).name}",
                "tokenizer.json",
                "vocab.txt",
                "~/tok.json",
                "C:\\tok\\tokenizer.json",
            ]
        ),
        label="value",
    )
    key = draw(st.sampled_from(FILE_KEYS) | st.sampled_from(OTHER_KEYS), label="key")
    if key in OTHER_KEYS and not any(s in value for s in ("/", "\\", ".json", ".txt")):
        value = path  # a plain key is refused for what its value looks like
    shape = draw(st.sampled_from(["top", "list", "nested"]), label="shape")
    setting = value if shape == "top" else [value] if shape == "list" else {"options": {key: value}}
    return key, setting, target


def fuzz_tokenizer_files(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """A pack whose tokenizer settings name a file (re-hashed, so only the setting is wrong): every load
    refuses it without opening anything outside the pack, and ``verify`` (with and without --load) fails."""
    scratch = Path(tempfile.mkdtemp(dir=samples.root))
    other = scratch / "other-tokenizer"
    shutil.copytree(samples.pack / TOKENIZER, other)
    fifo = scratch / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading would block forever: a load that followed the setting hangs
    outside = {"other tokenizer": str(other / "tokenizer.json"), "fifo": str(fifo), "/dev/zero": "/dev/zero",
               "pack_tokenizer": str(samples.pack / TOKENIZER)}  # fmt: skip
    forbidden = {os.path.realpath(outside[t]) for t in ("other tokenizer", "fifo", "/dev/zero")}

    @_settings(max_examples, derandomize)
    @given(case=file_setting(outside), file=st.sampled_from(["tokenizer_config.json", "special_tokens_map.json"]))
    def case(case, file):
        key, setting, target = case
        with tempfile.TemporaryDirectory(dir=samples.root) as work:
            folder = Path(work) / "pack"
            shutil.copytree(samples.pack, folder)
            settings_path = folder / TOKENIZER / file
            config = json.loads(settings_path.read_text())
            config[key] = setting
            settings_path.write_text(json.dumps(config))
            rehash(folder)
            kit._current_damage[:] = [f"{file}: {key} = {json.dumps(setting)[:80]} ({target})"]
            with opened_files() as seen:
                for verify_hashes in (True, False):
                    result = kit.outcome(
                        lambda v=verify_hashes: LanguagePack.from_pretrained(folder, verify=v),
                        "tokenizer_files",
                        seconds=10,
                    )
                    assert result == "CorruptArtifactError", (kit._current_damage, result)
            tokenizer_files = [
                p for p in seen if Path(p).name.endswith((".json", ".txt", ".model")) and "checked" not in p
            ]
            assert tokenizer_files and all(p.startswith(os.path.realpath(folder) + os.sep) for p in tokenizer_files), (
                seen
            )
            assert not forbidden & set(seen), seen  # the setting was never followed
            for load in (False, True):
                rows = failed_rows(folder, load=load)
                assert any("names a file" in row for row in rows), (kit._current_damage, rows)
            kit.STATS["tokenizer_files:verify_failed"] += 2

    case()


# --- class 3: token ids beyond the matrix ----------------------------------------------------------


def _raise_id(data: dict, kind: str, new_id: int, draw) -> str:
    """Change a tokenizer.json so that it can produce ``new_id``; returns the token or part changed."""
    if kind == "vocab":
        words = sorted(w for w in data["model"]["vocab"] if w.isalpha() and len(w) > 1)
        word = draw(st.sampled_from(words), label="word")
        data["model"]["vocab"][word] = new_id
        return word
    if kind == "template":
        token = draw(st.sampled_from(sorted(data["post_processor"]["special_tokens"])), label="token")
        data["post_processor"]["special_tokens"][token]["ids"] = [new_id]
        return token
    if kind == "bert_processing":
        data["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", new_id], "cls": ["[CLS]", 2]}
        return "[SEP]"
    if kind == "padding":
        data["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                           "pad_id": new_id, "pad_type_id": 0, "pad_token": "[PAD]"}  # fmt: skip
        return "[PAD]"
    # an added token: tokenizers numbers it after the vocabulary, one past the matrix
    data["added_tokens"].append({"id": new_id, "content": "qqzz", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": True, "special": kind == "special"})  # fmt: skip
    return "qqzz"


def fuzz_token_ids(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """A pack whose tokenizer can produce an id >= its matrix rows (same vocabulary size where the
    kind allows): loading, ``verify --load`` and composing refuse it, naming the pack, the id and the rows."""
    rows = json.loads((samples.pack / "config.json").read_text())["vocab_size"]
    original = json.loads((samples.pack / TOKENIZER / "tokenizer.json").read_text())
    body = Body.from_pretrained(samples.body)

    @_settings(max_examples, derandomize)
    @given(
        kind=st.sampled_from(["vocab", "template", "bert_processing", "padding", "added", "special"]),
        new_id=st.integers(rows, rows + 3) | st.integers(rows, 2**31 - 1),
        data=st.data(),
    )
    def case(kind, new_id, data):
        with tempfile.TemporaryDirectory(dir=samples.root) as work:
            folder = Path(work) / "pack"
            shutil.copytree(samples.pack, folder)
            changed = copy.deepcopy(original)
            what = _raise_id(changed, kind, new_id, data.draw)
            (folder / TOKENIZER / "tokenizer.json").write_text(json.dumps(changed))
            rehash(folder)
            kit._current_damage[:] = [f"{kind}: {what} -> id {new_id}"]
            messages = []

            def load():
                try:
                    LanguagePack.from_pretrained(folder)
                except Exception as err:
                    messages.append(str(err))
                    raise

            assert kit.outcome(load, "token_ids", seconds=10) == "IncompatibleArtifactError", kit._current_damage
            expected = rows if kind in ("added", "special") else new_id
            assert f"id {expected}" in messages[0] and f"{rows} rows" in messages[0] and "pack 'en'" in messages[0], (
                messages
            )
            assert any(r.startswith("(load): ") and f"id {expected}" in r for r in failed_rows(folder, load=True))
            pack = copy.copy(samples_pack(samples))
            object.__setattr__(pack, "tokenizer", _tokenizer_of(folder))  # a live pack whose tokenizer changed since
            assert (
                kit.outcome(lambda: __import__("embswap").compose(body, pack), "token_ids")
                == "IncompatibleArtifactError"
            )

    case()


def samples_pack(samples: kit.Samples) -> LanguagePack:
    cached = getattr(samples, "_pack", None)
    if cached is None:
        cached = LanguagePack.from_pretrained(samples.pack)
        object.__setattr__(samples, "_pack", cached)
    return cached


def _tokenizer_of(folder: Path):
    from embswap.artifacts import load_tokenizer

    return load_tokenizer(folder / TOKENIZER)


# --- class 4: names ----------------------------------------------------------------------------------

KNOWN_NAMES = ["en", "de", "zh-Hans", "4-e", "l0", "en-robust-1", "en-relearned", "genre", "sentence-embedding",
               "de~mlm~rand~s0", "de~mlm+align~dict5000~s1", "classification~x1.5~lr2e-05~noise0.1~s0", "de_CH",
               "x" * 100]  # fmt: skip
PATH_LIKE = ["..", ".", "...", "../../x", "a/b", "a\\b", "/etc", "-x", "--help", ".hidden", ".embswap-tmp-en-0123abcd",
             "", " en", "en ", "de\n", "de\x00", "de\x1b[31m", "é", "x" * 101, "C:", "~", "a/../b"]  # fmt: skip


def name_strategy():
    plain = st.text(alphabet="abcXYZ019-_.~+", min_size=1, max_size=12)
    hostile = st.builds(
        lambda a, sep, b: a + sep + b, plain, st.sampled_from(["/", "\\", "/../", "\x00", "\n", "\t", " "]), plain
    )
    return st.sampled_from(KNOWN_NAMES + PATH_LIKE) | plain | hostile | st.text(max_size=20)


def fuzz_names(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """Any name the validator accepts is one direct child of packs/ and tasks/; any other is refused by
    every entry point with a one-line InvalidNameError, and a pack config that records one does not load."""
    store = Store(samples.store)
    pack = samples_pack(samples)
    task = TaskModule(task="classification", labels=["a"], head={"weight": torch.zeros(1, 32)},
                      body_fingerprint=pack.body_fingerprint)  # fmt: skip

    @_settings(max_examples, derandomize)
    @given(name=name_strategy())
    def case(name):
        kit._current_damage[:] = [f"name {name!r}"]
        if is_valid_name(name):
            kit.STATS["names:accepted"] += 1
            for sub, path in (("packs", store.pack_path(name)), ("tasks", store.task_path(name))):
                assert path.resolve().parent == (store.path / sub).resolve() and path.name == name, (name, path)
            assert check_name(name) == name
            return
        refused = {
            "check_name": lambda: check_name(name, "language code"),
            "Store.pack": lambda: store.pack(name),
            "Store.task": lambda: store.task(name),
            "Store.save_pack": lambda: store.save_pack(pack, name),
            "Store.save_task": lambda: store.save_task(name, task),
            "LanguagePack": lambda: LanguagePack(language=name, tokenizer=pack.tokenizer, word_embeddings=pack.word_embeddings,
                                                 output_bias=pack.output_bias, body_fingerprint=pack.body_fingerprint),
        }  # fmt: skip
        before = sorted(p.name for p in store.path.rglob("*"))
        for entry, action in refused.items():
            assert kit.outcome(action, "names") == "InvalidNameError", (name, entry)
        assert sorted(p.name for p in store.path.rglob("*")) == before  # nothing written anywhere
        with tempfile.TemporaryDirectory(dir=samples.root) as work:
            folder = Path(work) / "pack"
            shutil.copytree(samples.pack, folder)
            config = json.loads((folder / "config.json").read_text())
            config["language"] = name
            (folder / "config.json").write_text(json.dumps(config))
            assert kit.outcome(lambda: LanguagePack.from_pretrained(folder), "names") == "CorruptArtifactError"

    case()


# --- class 7: finite floats that are Inf after the cast to float32 ------------------------------------


def composable_task(body: Body, pack: LanguagePack) -> TaskModule:
    """A classification task with every tensor its model needs (head, pooler), a body delta and special rows."""
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(body.hf_config(pack.vocab_size, num_labels=2))
    head = {k: v.clone() for k, v in model.state_dict().items() if k not in body.tensors and "word_embeddings" not in k}
    first = min(body.tensors)
    return TaskModule(
        task="classification",
        labels=["a", "b"],
        head=head,
        body_fingerprint=body.fingerprint,
        body_delta={first: body.tensors[first] + 0.01},
        special_rows={i: torch.randn(body.embedding_dim) for i in body.special_tokens.values()},
    )


def _overflowing(tensor: torch.Tensor, index: int, value: float) -> torch.Tensor:
    wide = tensor.to(torch.float64).clone()
    wide.view(-1)[index % wide.numel()] = value
    return wide


def fuzz_dtype_range(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """A float64 tensor in a pack, task or body with finite values beyond float32's range (or, as the
    control, just inside it): loading, ``verify --load`` and composing refuse the first and accept the second."""
    pack = samples_pack(samples)
    body = Body.from_pretrained(samples.body)
    task = composable_task(body, pack)
    body_names = sorted(n for n, t in body.tensors.items() if t.is_floating_point())

    @_settings(max_examples, derandomize)
    @given(kind=st.sampled_from(["pack", "task", "body"]), data=st.data(),
           magnitude=st.floats(FLOAT32_MAX * 1.0001, 1.7e308) | st.sampled_from([1e306, 1e39, float(FLOAT32_MAX) * 2]),
           negative=st.booleans(), inside=st.booleans(), index=st.integers(0, 10**6))  # fmt: skip
    def case(kind, data, magnitude, negative, inside, index):
        value = (-1 if negative else 1) * (3.0e38 if inside else magnitude)
        if kind == "pack":
            part = data.draw(st.sampled_from(["word_embeddings", "output_bias"]), label="tensor")
            artifact = LanguagePack(language="en", tokenizer=pack.tokenizer, body_fingerprint=pack.body_fingerprint,
                                    word_embeddings=pack.word_embeddings, output_bias=pack.output_bias)  # fmt: skip
            setattr(artifact, part, _overflowing(getattr(artifact, part), index, value))
            cls = LanguagePack
        elif kind == "task":
            part = data.draw(st.sampled_from(["head", "body_delta", "special_rows"]), label="tensor")
            artifact = copy.copy(task)
            if part == "special_rows":
                artifact.special_rows = {i: _overflowing(r, index, value) for i, r in task.special_rows.items()}
            else:
                name = data.draw(st.sampled_from(sorted(getattr(task, part))), label="name")
                setattr(
                    artifact, part, {**getattr(task, part), name: _overflowing(getattr(task, part)[name], index, value)}
                )
            cls = TaskModule
        else:
            part = data.draw(st.sampled_from(body_names), label="tensor")
            artifact = Body(family=body.family, model_config=body.model_config, special_tokens=body.special_tokens,
                            tensors={**body.tensors, part: _overflowing(body.tensors[part], index, value)},
                            embedding_dim=body.embedding_dim)  # fmt: skip
            cls = Body
        kit._current_damage[:] = [f"{kind} {part} float64 {value:.3g}"]
        expected = "ok" if inside else "CorruptArtifactError"
        with tempfile.TemporaryDirectory(dir=samples.root) as work:
            folder = artifact.save_pretrained(Path(work) / kind)
            assert kit.outcome(lambda: cls.from_pretrained(folder), "dtype_range") == expected, kit._current_damage
            assert bool(failed_rows(folder, load=True)) == (not inside)
        composing = {"pack": lambda: __import__("embswap").compose(body, artifact),
                     "task": lambda: __import__("embswap").compose(body, pack, artifact),
                     "body": lambda: __import__("embswap").compose(artifact, pack)}[kind]  # fmt: skip
        if kind == "body":  # a body's fingerprint changes with its tensors: the pack was made for the old one
            artifact.__dict__["fingerprint"] = body.fingerprint
        result = kit.outcome(composing, "dtype_range")
        assert result == ("ok" if inside else "IncompatibleArtifactError"), (kit._current_damage, result)

    case()


FAMILIES = {
    "tokenizer_files": fuzz_tokenizer_files,
    "token_ids": fuzz_token_ids,
    "names": fuzz_names,
    "dtype_range": fuzz_dtype_range,
}
