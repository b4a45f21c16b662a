"""The alignment objective: only pack rows train, teacher vectors are cached by content, bad pairs fail early."""

import pytest
import torch

from embswap import DataError, split_model
from embswap.compose import build_empty_model, composed_state_dict
from embswap.train.align import read_parallel, teacher_key, teacher_vectors
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import TransferConfig, run_transfer
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm

PAIRS = [{"source": en, "target": de} for en, de in zip(EN_TEXT[:8], DE_TEXT[:8])] * 2


@pytest.fixture
def parts():
    model, tok = make_mlm("bert")
    body, en = split_model(model, tok, "en")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", special_ids=body.special_tokens, min_frequency=1)
    return body, en, de_tok


@pytest.mark.parametrize("objective", ["align", "mlm+align"])
def test_align_trains_only_pack_tensors(tmp_path, parts, objective):
    body, en, de_tok = parts
    before = {k: v.clone() for k, v in body.tensors.items()}
    out = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(
            language="de",
            init="random",
            objective=objective,
            objective_options={"parallel": PAIRS, "teacher_cache": str(tmp_path / "cache")},
            max_steps=6,
            batch_size=4,
            seq_len=32,
            lr=1e-2,
            checkpoint_every=None,
            progress=False,
        ),
        output=tmp_path / "de",
        reference_pack=en,
    )
    for key, tensor in before.items():
        assert torch.equal(body.tensors[key], tensor), key
    model = out.model
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias"}
    assert out.result.step == 6
    assert out.pack.provenance["objective"] == objective
    assert out.pack.provenance["loss_terms"]["align"] == 5000.0
    last = [r for r in out.result.history if "loss" in r][-1]
    assert last["step"] == 6
    if objective == "align":  # a single term: its loss is the logged loss, no per-term split
        assert "align_loss" not in last and "mlm_loss" not in last
    else:  # the logged loss is the weighted sum of the logged terms
        assert last["loss"] == pytest.approx(last["mlm_loss"] + 5000.0 * last["align_loss"], rel=1e-3)


def test_align_lowers_loss(tmp_path, parts):
    body, en, de_tok = parts
    out = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(
            language="de",
            init="random",
            objective="align",
            objective_options={"parallel": PAIRS, "teacher_cache": str(tmp_path)},
            max_steps=40,
            batch_size=8,
            seq_len=32,
            lr=2e-2,
            warmup_steps=0,
            log_every=5,
            checkpoint_every=None,
            progress=False,
        ),
        output=None,
        reference_pack=en,
    )
    losses = [r["loss"] for r in out.result.history if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]


def test_teacher_cache_key_and_reuse(tmp_path, parts):
    body, en, _ = parts
    sources = [p["source"] for p in PAIRS[:5]]
    model = build_empty_model(body, en.vocab_size)
    model.load_state_dict(composed_state_dict(model, body, en, None))
    counted = []
    first = teacher_vectors(model, en, body.fingerprint, sources, cache_dir=tmp_path, progress=counted.append)
    assert len(list(tmp_path.iterdir())) == 1 and sum(counted) == 5
    again = teacher_vectors(model, en, body.fingerprint, sources, cache_dir=tmp_path)
    assert torch.equal(first, again) and len(list(tmp_path.iterdir())) == 1
    assert torch.allclose(first.norm(dim=-1), torch.ones(5))
    key = teacher_key(body.fingerprint, en, "mean", 128)
    assert [p.name for p in tmp_path.iterdir()] == [key]
    other_body, _ = split_model(*make_mlm("bert", seed=3), "en")
    assert teacher_key(other_body.fingerprint, en, "mean", 128) != key
    changed = type(en)(
        language="en",
        tokenizer=en.tokenizer,
        word_embeddings=en.word_embeddings + 1,
        output_bias=en.output_bias,
        body_fingerprint=body.fingerprint,
    )
    assert teacher_key(body.fingerprint, changed, "mean", 128) != key
    assert teacher_key(body.fingerprint, en, "cls", 128) != key and teacher_key(body.fingerprint, en, "mean", 64) != key


def test_teacher_cache_computes_only_the_sentences_it_lacks(tmp_path, parts):
    body, en, _ = parts
    model = build_empty_model(body, en.vocab_size)
    model.load_state_dict(composed_state_dict(model, body, en, None))
    sources = list(dict.fromkeys(p["source"] for p in PAIRS))  # 8 distinct sentences
    teacher_vectors(model, en, body.fingerprint, sources[:6], cache_dir=tmp_path)
    counted = []
    more = sources[3:] + sources[3:4]  # three cached, the rest new, one repeated
    mixed = teacher_vectors(model, en, body.fingerprint, more, cache_dir=tmp_path / "", progress=counted.append)
    fresh = teacher_vectors(model, en, body.fingerprint, more, cache_dir=tmp_path / "alone")
    assert torch.allclose(mixed, fresh, atol=1e-6) and torch.equal(mixed[0], mixed[-1])
    shards = sorted((tmp_path / teacher_key(body.fingerprint, en, "mean", 128)).iterdir())
    assert len(shards) == 2 and not any(p.name.startswith(".") for p in shards)  # no temporary file left
    # The four cached entries (three sentences, one twice) advance the bar at once; only new ones are encoded.
    assert counted[0] == 4 and sum(counted[1:]) == len(sources) - 6 > 0
    # A damaged shard is recomputed, not fatal.
    shards[0].write_bytes(b"not a safetensors file")
    again = teacher_vectors(model, en, body.fingerprint, more, cache_dir=tmp_path)
    assert torch.allclose(again, fresh, atol=1e-6)


def test_only_the_pairs_the_steps_read_get_teacher_vectors(tmp_path, parts):
    from embswap.io import load_tensors
    from embswap.train.align import ParallelBatches

    body, en, de_tok = parts
    pairs = [{"source": f"{a} ({i})", "target": b} for i, (a, b) in enumerate(zip(EN_TEXT * 3, DE_TEXT * 3))][:40]
    batches = ParallelBatches(de_tok, [p["target"] for p in pairs], batch_size=4, seed=0, max_length=32)
    read = batches.rows_read(3)
    assert len(read) == 12 and read == sorted({i for step in range(3) for i in batches(step)["index"].tolist()})
    assert batches.rows_read(1000) == list(range(40))  # a long run reads every pair
    run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(
            language="de",
            init="random",
            objective="align",
            objective_options={"parallel": pairs, "teacher_cache": str(tmp_path)},
            max_steps=3,
            batch_size=4,
            seq_len=32,
            checkpoint_every=None,
            progress=False,
        ),
        output=None,
        reference_pack=en,
    )
    (shard,) = (tmp_path / teacher_key(body.fingerprint, en, "mean", 32)).iterdir()
    assert load_tensors(shard)["vectors"].shape[0] == 12  # 12 distinct sources read, not 40


def test_bad_parallel_input(tmp_path, parts):
    body, en, de_tok = parts
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\ttwo\nonly one field\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected 'source<TAB>target', found 1 fields"):
        read_parallel(bad)
    empty = [{"source": "x", "target": " "}]
    with pytest.raises(DataError, match="pair 1: the target side is empty"):
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(
                language="de", objective="align", objective_options={"parallel": empty}, max_steps=2, progress=False
            ),
            output=tmp_path / "out",
            reference_pack=en,
        )
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="needs parallel text"):
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(language="de", objective="align", max_steps=2, progress=False),
            output=None,
            reference_pack=en,
        )


def test_cli_transfer_align(tmp_path, parts):
    from typer.testing import CliRunner

    from embswap import LanguagePack, Store
    from embswap.cli.main import app

    body, en, de_tok = parts
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(en)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{p['source']}\t{p['target']}\n" for p in PAIRS), encoding="utf-8")
    args = [
        "transfer",
        "--body",
        str(store.body_path),
        "--lang",
        "de",
        "-o",
        str(store.pack_path("de")),
        "--objective",
        "align",
        "--parallel",
        str(tsv),
        "--vocab-size",
        "90",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--init",
        "overlap",
        "--quiet",
        "--align-weight",
        "100",
    ]
    result = CliRunner().invoke(app, args, env={"EMBSWAP_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    pack = LanguagePack.from_pretrained(store.pack_path("de"))
    assert pack.provenance["objective"] == "align" and pack.provenance["loss_terms"] == {"align": 100.0}
    no_pairs = [a for i, a in enumerate(args) if a != "--parallel" and (i == 0 or args[i - 1] != "--parallel")]
    missing = CliRunner().invoke(app, no_pairs)
    assert missing.exit_code == 2 and "--parallel" in missing.output


def test_mlm_align_changes_only_pack_rows_and_bias(tmp_path, parts):
    import hashlib

    from embswap.architectures import pack_parameter_names
    from embswap.io import tensor_bytes

    body, en, de_tok = parts
    out = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(
            language="de",
            init="overlap",
            objective="mlm+align",
            objective_options={"parallel": PAIRS, "teacher_cache": str(tmp_path)},
            max_steps=4,
            batch_size=4,
            seq_len=32,
            lr=1e-2,
            checkpoint_every=None,
            progress=False,
        ),
        output=None,
        reference_pack=en,
    )
    aliases = pack_parameter_names(out.model)
    pack_names = set(aliases["word_embeddings"]) | set(aliases["output_bias"])

    def hashes(state):
        return {k: hashlib.sha256(tensor_bytes(v)).hexdigest() for k, v in state.items() if k not in pack_names}

    assert hashes(out.model.state_dict()) == hashes(body.tensors)  # every other tensor, bit for bit
    assert not torch.equal(out.pack.word_embeddings, out.init.word_embeddings)
    assert not torch.equal(out.pack.output_bias, out.init.output_bias)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("God.\tGott.\nonly one field\n", "pairs.tsv:2: expected 'source<TAB>target', found 1 fields"),
        ("God.\tGott.\nLight.\t  \n", "pairs.tsv, pair 2: the target side is empty"),
    ],
)
def test_cli_mlm_align_bad_pairs_fail_in_one_line_before_training(tmp_path, parts, lines, message):
    from typer.testing import CliRunner

    from embswap import Store
    from embswap.cli.main import app
    from embswap.train.transfer import checkpoint_dir_for

    body, en, _ = parts
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(en)
    (tmp_path / "pairs.tsv").write_text(lines, encoding="utf-8")
    (tmp_path / "de.txt").write_text("\n".join(DE_TEXT), encoding="utf-8")
    out = store.pack_path("de")
    args = [
        "transfer",
        "--body",
        str(store.body_path),
        "--lang",
        "de",
        "-o",
        str(out),
        "--objective",
        "mlm+align",
        "--text",
        str(tmp_path / "de.txt"),
        "--parallel",
        str(tmp_path / "pairs.tsv"),
        "--vocab-size",
        "90",
        "--init",
        "overlap",
        "--reference-pack",
        str(store.pack_path("en")),
        "--max-steps",
        "3",
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
    assert not out.exists() and not checkpoint_dir_for(out).exists()


def _bad_inputs(tmp_path):
    """(name, extra transfer args, expected message fragment) for align runs that must not start."""
    from embswap.train.tokenizer import train_tokenizer
    from tests.helpers.models import make_mlm

    (tmp_path / "missing.jsonl").write_text('{"source": "a", "target": "b"}\n{"source": "c"}\n', encoding="utf-8")
    (tmp_path / "broken.jsonl").write_text('{"source": "a", "target": "b"}\n{"source": \n', encoding="utf-8")
    (tmp_path / "empty.tsv").write_text("a\tb\n\nc\t \n", encoding="utf-8")  # blank lines are skipped
    (tmp_path / "three.tsv").write_text("a\tb\tc\n", encoding="utf-8")
    _, other_en = split_model(*make_mlm("bert", seed=7), "en")
    other_en.save_pretrained(tmp_path / "other-en")
    wrong = train_tokenizer(
        DE_TEXT, 90, family="bert", special_ids={"pad": 4, "unk": 3, "cls": 2, "sep": 1, "mask": 0}, min_frequency=1
    )
    wrong.save_pretrained(tmp_path / "wrong-tok")
    good = ["--parallel", str(tmp_path / "pairs.tsv")]
    return [
        (
            "jsonl without target",
            ["--parallel", str(tmp_path / "missing.jsonl")],
            "missing.jsonl:2: expected an object with 'source' and 'target'",
        ),
        ("broken json", ["--parallel", str(tmp_path / "broken.jsonl")], "broken.jsonl:2: not valid JSON"),
        ("empty side", ["--parallel", str(tmp_path / "empty.tsv")], "empty.tsv, pair 2: the target side is empty"),
        ("three fields", ["--parallel", str(tmp_path / "three.tsv")], "three.tsv:1: expected 'source<TAB>target'"),
        (
            "pack for another body",
            [*good, "--reference-pack", str(tmp_path / "other-en")],
            "reference pack 'en' was trained for body",
        ),
        (
            "tokenizer without the body's special ids",
            [*good, "--tokenizer", str(tmp_path / "wrong-tok")],
            "special-token ids",
        ),
    ]


def test_cli_align_bad_input_is_one_line_and_writes_nothing(tmp_path, parts):
    from typer.testing import CliRunner

    from embswap import Store
    from embswap.cli.main import app

    body, en, _ = parts
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(en)
    (tmp_path / "pairs.tsv").write_text("".join(f"{p['source']}\t{p['target']}\n" for p in PAIRS), encoding="utf-8")
    base = [
        "transfer",
        "--body",
        str(store.body_path),
        "--lang",
        "de",
        "-o",
        str(store.pack_path("de")),
        "--objective",
        "align",
        "--vocab-size",
        "90",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--quiet",
    ]
    for name, extra, message in _bad_inputs(tmp_path):
        result = CliRunner().invoke(app, [*base, *extra], env={"EMBSWAP_CACHE": str(tmp_path / "cache")})
        lines = result.output.strip().splitlines()  # info lines (the reference pack chosen), then the error
        errors = [line for line in lines if line.startswith("error: ")]
        assert result.exit_code == 1 and errors == [lines[-1]] and message in errors[0], (name, result.output)
        assert "Traceback" not in result.output, name
        assert sorted(p.name for p in (store.path / "packs").iterdir()) == ["en"], name
        assert not (tmp_path / "cache").exists(), name
    no_pairs = CliRunner().invoke(
        app,
        [
            "transfer",
            "--body",
            str(store.body_path),
            "--lang",
            "de",
            "-o",
            str(store.pack_path("de")),
            "--text",
            str(tmp_path / "pairs.tsv"),
            "--init",
            "aligned",
        ],
    )
    assert no_pairs.exit_code == 2 and "--init aligned word-aligns --parallel" in no_pairs.output


def test_cli_transfer_with_aligned_init(tmp_path, parts):
    pytest.importorskip("eflomal")
    from typer.testing import CliRunner

    from embswap import LanguagePack, Store
    from embswap.cli.main import app

    body, en, _ = parts
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(en)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{p['source']}\t{p['target']}\n" for p in PAIRS), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "transfer",
            "--body",
            str(store.body_path),
            "--lang",
            "de",
            "-o",
            str(store.pack_path("de")),
            "--objective",
            "align",
            "--parallel",
            str(tsv),
            "--init",
            "aligned",
            "--vocab-size",
            "90",
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            "--seq-len",
            "32",
            "--quiet",
        ],
        env={"EMBSWAP_CACHE": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output
    pack = LanguagePack.from_pretrained(store.pack_path("de"))
    init = pack.provenance["init"]
    assert init["method"] == "aligned" and init["counts"]["aligned"] > 10 and init["reference_pack"] == "en"
    assert sum(init["counts"].values()) == pack.vocab_size
