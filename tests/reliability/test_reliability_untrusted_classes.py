"""Four classes of hostile artifacts, each tested as a generated family (tests/helpers/reliability_classes.py,
which benchmarks/reliability.py runs longer) plus the examples that found them:

- a tokenizer reads only its own pack's tokenizer.json: settings that name files are refused;
- every id a tokenizer can produce has a row in its pack's matrix (also in a multi-language table);
- language codes and artifact names are plain folder names, for the CLI and the library alike;
- finite values that a cast to the compute dtype would turn into Inf are refused.
"""

import json
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

import embswap
from embswap import LanguagePack, MultiLanguageModel, Store, TaskModule, compose, split_model
from embswap.cli.main import app
from embswap.errors import CorruptArtifactError, EmbswapError, IncompatibleArtifactError, InvalidNameError
from embswap.names import NAME_RULE, check_name
from embswap.safety import file_settings, looks_like_file, max_token_id
from tests.helpers import reliability_classes as classes
from tests.helpers import reliability_kit as kit
from tests.helpers.models import random_task

runner = CliRunner()

# max_examples per family in the default suite (benchmarks/reliability.py runs more, with fresh seeds)
BUDGET = {"tokenizer_files": 30, "token_ids": 30, "names": 150, "dtype_range": 30}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return kit.make_samples(tmp_path_factory.mktemp("samples"))


@pytest.mark.parametrize("family", list(BUDGET))
def test_generated_family(samples, family):
    before = kit.STATS[f"{family}:cases"]
    classes.FAMILIES[family](samples, BUDGET[family], derandomize=True)
    assert kit.STATS[f"{family}:cases"] - before >= BUDGET[family]


def _one_line_cli(*args):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# --- tokenizer settings that name files ------------------------------------------------------------


def _pack_with_setting(samples, tmp_path, key, value, file="tokenizer_config.json"):
    folder = tmp_path / "pack"
    shutil.copytree(samples.pack, folder)
    path = folder / "tokenizer" / file
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    classes.rehash(folder)
    return folder


def test_tokenizer_file_pointing_at_another_tokenizer_is_refused_not_loaded(samples, tmp_path, bert_mlm):
    other = tmp_path / "other"
    from tests.helpers.models import DE_TEXT, make_tokenizer

    make_tokenizer("bert", texts=DE_TEXT).save_pretrained(other)
    folder = _pack_with_setting(samples, tmp_path, "tokenizer_file", str(other / "tokenizer.json"))
    with pytest.raises(CorruptArtifactError) as err:
        LanguagePack.from_pretrained(folder)
    assert str(err.value) == (
        f"{folder / 'tokenizer' / 'tokenizer_config.json'}: setting 'tokenizer_file' names a file "
        f"({str(other / 'tokenizer.json')!r}); embswap reads a tokenizer only from its own tokenizer.json and opens no "
        "other file: do not use this tokenizer (or save it again without the setting)"
    )
    result = _one_line_cli("verify", str(folder))
    assert result.exit_code == 1 and "setting 'tokenizer_file' names a file" in result.stderr
    report = json.loads(_one_line_cli("verify", str(folder), "--load", "--json").stdout)
    assert [r["file"] for r in report["files"] if r["status"] == "error"] == ["tokenizer/tokenizer_config.json"]


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_fifo_and_dev_zero_settings_fail_at_once(samples, tmp_path, target):
    path = "/dev/zero"
    if target == "fifo":
        path = str(tmp_path / "pipe")
        os.mkfifo(path)
    folder = _pack_with_setting(samples, tmp_path, "vocab_file", path)
    # following the setting would block on the pipe or read /dev/zero without end
    with kit.time_bound(10), pytest.raises(CorruptArtifactError, match="setting 'vocab_file' names a file"):
        LanguagePack.from_pretrained(folder, verify=False)


@pytest.mark.parametrize(
    "config, found",
    [({"merges_file": "merges.txt"}, [("merges_file", "merges.txt")]),
     ({"sp_model_kwargs": {"model_file": "/x/sp.model"}}, [("sp_model_kwargs.model_file", "/x/sp.model")]),
     ({"vocab": "../../vocab.json"}, [("vocab", "../../vocab.json")]),
     ({"weird": ["a", "/etc/passwd"]}, [("weird.1", "/etc/passwd")]),
     ({"tokenizer_file": None, "vocab_file": "", "eos_token": "</s>", "mask_token": "/", "chat_template": "{{ a/b }}",
       "model_input_names": ["input_ids"], "tokenizer_class": "PreTrainedTokenizerFast"}, [])],
)  # fmt: skip
def test_file_settings_rule_is_generic(config, found, tmp_path):
    assert file_settings(tmp_path / "tokenizer_config.json", config) == found


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/abs", True),
        ("C:\\x", True),
        ("..", True),
        ("a/b", True),
        ("x.model", True),
        ("</s>", True),
        ("[CLS]", False),
        ("right", False),
        ("a b/c", False),
        ("", False),
    ],
)
def test_looks_like_file(value, expected):
    # "</s>" is a path by shape: that is why special-token settings are never read as file references
    assert looks_like_file(value) is expected


def test_loaded_tokenizer_equals_transformers_and_exports_a_clean_config(samples, tmp_path):
    from transformers import AutoTokenizer

    ours = LanguagePack.from_pretrained(samples.pack).tokenizer
    theirs = AutoTokenizer.from_pretrained(str(samples.pack / "tokenizer"))
    texts = ["In the beginning God created the heavens.", "Und Gott sprach: [MASK] Licht!"]
    assert ours(texts, texts[::-1])["input_ids"] == theirs(texts, texts[::-1])["input_ids"]
    assert ours.get_vocab() == theirs.get_vocab() and ours.all_special_ids == theirs.all_special_ids
    store = Store(samples.store)
    out = embswap.export(store.body, store.pack("en"), None, tmp_path / "model")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert file_settings(out / "tokenizer_config.json", config) == []
    for path in out.rglob("*.json"):  # no path of the store leaks into the export
        assert str(samples.store) not in path.read_text()


# --- token ids beyond the matrix --------------------------------------------------------------------


def _store_with_shifted_de(samples, tmp_path, new_id):
    root = tmp_path / "store"
    shutil.copytree(samples.store, root)
    folder = root / "packs" / "de"
    data = json.loads((folder / "tokenizer" / "tokenizer.json").read_text())
    data["model"]["vocab"]["God"] = new_id  # same vocabulary size, one id past the matrix
    (folder / "tokenizer" / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "language": "de"})
    )  # the sample store's "de" is a copy of "en"
    classes.rehash(folder)
    return Store(root)


def test_the_issue_example_same_size_tokenizer_with_an_id_past_the_rows(samples, tmp_path):
    store = _store_with_shifted_de(samples, tmp_path, 120)
    with pytest.raises(IncompatibleArtifactError) as err:
        store.pack("de")
    assert str(err.value) == (
        "pack 'de': the tokenizer can produce id 120 (token 'God') but the embedding matrix has 120 rows (ids 0 to 119); "
        "the tokenizer and the matrix do not belong together: do not use this pack"
    )
    with pytest.raises(IncompatibleArtifactError, match="pack 'de': the tokenizer can produce id 120"):
        embswap.load(store, languages=["en", "de"])  # would otherwise read row 0 of the next pack in the shared table
    result = _one_line_cli("compose", "--store", str(store.path), "--lang", "de", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "id 120" in result.stderr
    assert not (tmp_path / "out").exists()


def test_multilang_refuses_a_tokenizer_that_grew_and_ids_outside_a_language(samples):
    store = Store(samples.store)
    body, en, de = store.body, store.pack("en"), store.pack("de")
    assert max_token_id(de.tokenizer) == (119, "token 'z'")
    multi = MultiLanguageModel(body, {"en": en, "de": de})
    ids = torch.tensor([[2, 119, 3]])
    multi(ids, languages=["de"])  # the last row of a language is fine
    with pytest.raises(EmbswapError) as err:
        multi(torch.tensor([[2, 120, 3]]), languages=["de"])
    assert str(err.value) == (
        "input id 120 (example 0) is outside language 'de''s vocabulary of 120 tokens; tokenize "
        "each text with its own language's tokenizer (MultiLanguageModel.tokenize)"
    )
    with_task = MultiLanguageModel(body, {"en": en, "de": de}, random_task(body, en))
    with pytest.raises(EmbswapError, match=r"input id -1 \(example 1\) is outside language 'de'"):
        with_task(torch.tensor([[2, 5, 3], [2, -1, 3]]), languages=["en", "de"])  # a mixed batch
    grown = LanguagePack.from_pretrained(samples.pack)
    grown.tokenizer.add_tokens(["brandneu"])  # after the pack was made: id 120 has no row
    with pytest.raises(IncompatibleArtifactError, match=r"has 120 rows \(id 120, added token 'brandneu', has none\)"):
        MultiLanguageModel(body, {"en": en, "de": grown})
    with pytest.raises(IncompatibleArtifactError, match="id 120"):
        compose(body, grown)


# --- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", classes.KNOWN_NAMES)
def test_names_the_project_uses_are_accepted(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", classes.PATH_LIKE)
def test_path_like_names_are_refused_with_the_rule(name):
    with pytest.raises(InvalidNameError) as err:
        check_name(name, "language code")
    assert str(err.value) == f"language code {name!r} is not allowed: use {NAME_RULE}" or "…" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "args",
    [["split", "{model}", "-o", "{store}", "--lang", "../../escaped"],
     ["compose", "--store", "{store}", "--lang", "../../elsewhere", "-o", "{tmp}/out"],
     ["transfer", "--body", "{store}/body", "--lang", "../x", "--text", "{tmp}/t.txt", "-o", "{tmp}/pack"],
     ["pretrain", "--lang", "en,../../x", "--text", "en={tmp}/t.txt", "--text", "../../x={tmp}/t.txt", "-o", "{tmp}/new"],
     ["evaluate", "--store", "{store}", "--task", "genre", "--lang", "..", "--data", "{tmp}/t.jsonl"],
     ["tokenizer", "train", "--lang", "a/b", "--text", "{tmp}/t.txt", "-o", "{tmp}/tok"]],
)  # fmt: skip
def test_cli_refuses_path_like_names_before_writing(samples, tmp_path, args, bert_mlm):
    (tmp_path / "t.txt").write_text("In the beginning\n")
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "a"}\n')
    model, tokenizer = bert_mlm
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    store = tmp_path / "store"
    shutil.copytree(samples.store, store)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    values = {"model": str(tmp_path / "model"), "store": str(store), "tmp": str(tmp_path)}
    result = _one_line_cli(*[a.format(**values) for a in args])
    assert result.exit_code == 1, result.output
    assert (
        result.stderr.startswith("error: ")
        and result.stderr.count("\n") == 1
        and "is not allowed: use" in result.stderr
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path.parent / "x").exists()


def test_store_lists_only_reachable_names(samples, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(samples.store, root)
    shutil.copytree(root / "packs" / "de", root / "packs" / "not a name")
    assert Store(root).languages == ["de", "en"]


# --- casts that create Inf ----------------------------------------------------------------------------


def test_float64_pack_near_1e306_is_refused_at_load_and_in_range_one_composes(samples, tmp_path):
    store = Store(samples.store)
    body, pack = store.body, store.pack("en")
    wide = pack.word_embeddings.double()
    wide[5, 7] = 1e306
    bad = LanguagePack(language="en", tokenizer=pack.tokenizer, word_embeddings=wide, output_bias=pack.output_bias,
                       body_fingerprint=pack.body_fingerprint)  # fmt: skip
    bad.save_pretrained(tmp_path / "bad")
    with pytest.raises(CorruptArtifactError) as err:
        LanguagePack.from_pretrained(tmp_path / "bad")
    assert str(err.value) == (
        f"{tmp_path / 'bad' / 'embeddings.safetensors'}: tensor 'word_embeddings' holds 1e+306 (flat index 167), which is "
        "Inf in float32, the precision embswap computes in; the weights are damaged or out of range: save them again in float32"
    )
    with pytest.raises(
        IncompatibleArtifactError, match=r"pack 'en': tensor 'word_embeddings' holds 1e\+306 .*Inf in float32"
    ):
        compose(body, bad)
    good = LanguagePack(language="en", tokenizer=pack.tokenizer, word_embeddings=pack.word_embeddings.double(),
                        output_bias=pack.output_bias.double(), body_fingerprint=pack.body_fingerprint)  # fmt: skip
    good.save_pretrained(tmp_path / "good")
    model, _ = compose(body, tmp_path / "good")
    reference, _ = compose(body, pack)
    ids = torch.tensor([[2, 10, 20, 3]])
    assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_half_precision_casts_on_request_are_checked(samples):
    store = Store(samples.store)
    body, en, de = store.body, store.pack("en"), store.pack("de")
    loud = LanguagePack(language="de", tokenizer=de.tokenizer, word_embeddings=de.word_embeddings * 0 + 70000.0,
                        output_bias=de.output_bias, body_fingerprint=de.body_fingerprint)  # fmt: skip
    with pytest.raises(IncompatibleArtifactError) as err:
        loud.to(torch.float16)
    assert str(err.value) == (
        "pack 'de': tensor 'word_embeddings' holds 7e+04 (flat index 0), which is Inf in float16; "
        "keep this pack in a wider dtype (float32 or bfloat16)"
    )
    assert loud.to(torch.bfloat16).word_embeddings.isfinite().all()
    with pytest.raises(
        IncompatibleArtifactError, match=r"pack 'de': .*Inf in a float16 table; use table_dtype=torch.bfloat16"
    ):
        MultiLanguageModel(body, {"en": en, "de": loud}, table_dtype=torch.float16)
    MultiLanguageModel(body, {"en": en, "de": loud}, table_dtype=torch.bfloat16)


def test_task_with_float64_rows_beyond_float32_is_refused(samples, tmp_path):
    task = TaskModule.from_pretrained(samples.task)
    task.special_rows = {0: task.special_rows[0].double().fill_(-3.5e38)}
    task.save_pretrained(tmp_path / "task")
    with pytest.raises(
        CorruptArtifactError, match=r"tensor 'rows' holds -3.5e\+38 \(flat index 0\), which is Inf in float32"
    ):
        TaskModule.from_pretrained(tmp_path / "task")


def test_split_model_checks_the_language_code(bert_mlm):
    model, tokenizer = bert_mlm
    with pytest.raises(InvalidNameError, match=r"language code '\.\./x' is not allowed"):
        split_model(model, tokenizer, "../x")
