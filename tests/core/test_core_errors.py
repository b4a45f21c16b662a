"""Every documented failure is one clear line (exit code 1 in the CLI), never a traceback."""

import json
import os
import shutil

import pytest
import torch
import transformers
from typer.testing import CliRunner

from embswap import (
    ArtifactNotFoundError,
    Body,
    CorruptArtifactError,
    IncompatibleArtifactError,
    LanguagePack,
    SchemaVersionError,
    UnsupportedModelError,
    compose,
    split,
    split_model,
)
from embswap.cli.main import app
from tests.helpers.models import make_mlm

runner = CliRunner()


def _run(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def saved(tmp_path, bert_mlm):
    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    body.save_pretrained(tmp_path / "body")
    pack.save_pretrained(tmp_path / "pack")
    return tmp_path, body, pack


def test_pack_for_another_body(saved):
    tmp, body, pack = saved
    other_model, other_tok = make_mlm("bert", seed=7)
    other_body, _ = split_model(other_model, other_tok, "en")
    with pytest.raises(IncompatibleArtifactError) as err:
        compose(other_body, pack)
    assert body.fingerprint[:12] in str(err.value) and other_body.fingerprint[:12] in str(err.value)
    other_body.save_pretrained(tmp / "other")
    code, out = _run("compose", "--body", str(tmp / "other"), "--pack", str(tmp / "pack"), "-o", str(tmp / "x"))
    assert code == 1 and "was trained for body" in out and len(out.strip().splitlines()) == 1
    assert not (tmp / "x").exists()


def test_hidden_size_mismatch(saved):
    tmp, body, pack = saved
    wide = LanguagePack(
        language="de",
        tokenizer=pack.tokenizer,
        word_embeddings=torch.zeros(pack.vocab_size, 48),
        output_bias=torch.zeros(pack.vocab_size),
        body_fingerprint=body.fingerprint,
    )
    with pytest.raises(IncompatibleArtifactError, match="48-dimensional embeddings, the body expects 32"):
        compose(body, wide)


def test_tokenizer_larger_than_matrix(saved):
    tmp, body, pack = saved
    with pytest.raises(IncompatibleArtifactError, match="tokenizer has .* tokens but the embedding matrix has 10 rows"):
        LanguagePack(
            language="de",
            tokenizer=pack.tokenizer,
            word_embeddings=torch.zeros(10, 32),
            body_fingerprint=body.fingerprint,
        )


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("version,match", [(99, "upgrade embswap"), ("x", "expected an integer")])
def test_schema_version(saved, version, match):
    tmp, body, pack = saved
    _edit_config(tmp / "pack", schema_version=version)
    with pytest.raises(SchemaVersionError, match=match):
        LanguagePack.from_pretrained(tmp / "pack")
    code, out = _run("inspect", str(tmp / "pack"))
    assert code == 1 and match.split()[0] in out


def test_missing_and_extra_files(saved):
    tmp, body, pack = saved
    (tmp / "pack" / "notes.bin").write_bytes(b"x")
    with pytest.raises(CorruptArtifactError, match="files its config does not list: notes.bin"):
        LanguagePack.from_pretrained(tmp / "pack")
    os.remove(tmp / "pack" / "notes.bin")
    os.remove(tmp / "body" / "body.safetensors")
    with pytest.raises(CorruptArtifactError, match="missing body.safetensors"):
        Body.from_pretrained(tmp / "body")


def test_truncated_and_bitflipped_safetensors(saved):
    tmp, body, pack = saved
    path = tmp / "pack" / "embeddings.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    # the header is checked against the file's size before the SHA-256 pass, with hashes or without
    for verify in (True, False):
        with pytest.raises(CorruptArtifactError, match="not a readable safetensors file .*truncated or padded"):
            LanguagePack.from_pretrained(tmp / "pack", verify=verify)
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptArtifactError, match="SHA-256"):
        LanguagePack.from_pretrained(tmp / "pack")


def test_path_does_not_exist(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        Body.from_pretrained(tmp_path / "nope")
    code, out = _run("inspect", str(tmp_path / "nope"))
    assert code == 1 and out.startswith("error:") and "does not exist" in out


def test_unsupported_family_lists_supported(tmp_path):
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    model = transformers.GPT2LMHeadModel(config)
    with pytest.raises(UnsupportedModelError, match="supported model types: .*bert.*roberta"):
        split_model(model, None, "en")


def test_model_without_mlm_head(tmp_path, bert_mlm):
    model, tokenizer = bert_mlm
    encoder = transformers.BertModel(model.config)
    encoder.save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    with pytest.raises(UnsupportedModelError, match="has no masked-LM head"):
        split(str(tmp_path / "encoder"), "en")
    code, out = _run("split", str(tmp_path / "encoder"), "-o", str(tmp_path / "store"))
    assert code == 1 and "MLM head" in out
    assert not (tmp_path / "store").exists()


def test_usage_error_exit_code_2(tmp_path):
    code, _ = _run("compose", "-o", str(tmp_path / "x"))
    assert code == 2


def test_corrupt_json_config(saved):
    tmp, body, pack = saved
    (tmp / "body" / "config.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="not valid JSON"):
        Body.from_pretrained(tmp / "body")


def test_body_tensors_changed_detected(saved):
    tmp, body, pack = saved
    shutil.copytree(tmp / "body", tmp / "body2")
    _edit_config(tmp / "body2", fingerprint="0" * 64)
    with pytest.raises(CorruptArtifactError, match="hash to"):
        Body.from_pretrained(tmp / "body2", verify=False)
