"""Correctness guards for the speed and memory optimisations (benchmarks/ measures their effect).

Covered elsewhere, not repeated here: masked-only logits equal full logits in loss and gradients
(test_mlm.py, every family); mixed-language batches equal single-language runs
(test_core_multilang.py). Row-sparse optimizer updates are not used: the output layer is tied to
the matrix, so every row has a gradient at every step (benchmarks/transfer_speed_profile.py shows it).
"""

import dataclasses
import hashlib
import importlib
import sys
from pathlib import Path

import pytest
import torch

from embswap import LanguagePack, MultiLanguageModel, compose, split_model
from embswap.architectures import output_layer, word_embeddings
from embswap.compose import special_rows_applied
from embswap.errors import EmbswapError, IncompatibleArtifactError
from embswap.train.loop import LoopConfig, default_optimizer
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import TransferConfig, _transfer_optimizer, run_transfer
from tests.helpers.models import DE_TEXT, EN_TEXT, FAMILIES, make_mlm, random_task

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _two_packs(name):
    model, tokenizer = make_mlm(name)
    body, en = split_model(model, tokenizer, "en")
    generator = torch.Generator().manual_seed(1)
    de = LanguagePack(
        language="de",
        tokenizer=tokenizer,
        body_fingerprint=body.fingerprint,
        word_embeddings=torch.randn(en.word_embeddings.shape, generator=generator),
        output_bias=torch.randn(en.output_bias.shape, generator=generator),
    )
    return body, en, de, tokenizer


def _tie_groups(model):
    groups = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return sorted(tuple(sorted(names)) for names in groups.values())


# --- fused AdamW in step 2 ------------------------------------------------------------------------


def test_fused_adamw_makes_the_same_updates_as_adamw():
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(300, 16, generator=generator), torch.randn(300, generator=generator)]
    grads = [[torch.randn(p.shape, generator=generator) for p in start] for _ in range(5)]
    config = LoopConfig(max_steps=5, lr=1e-2)
    results = []
    for factory in (default_optimizer, _transfer_optimizer):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optimizer = factory(params, config)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.step()
        results.append(params)
    assert _transfer_optimizer([torch.nn.Parameter(start[0].clone())], config).defaults["fused"] is True
    for plain, fused in zip(*results):
        assert torch.allclose(plain, fused, rtol=1e-6, atol=1e-7)


# --- bfloat16 autocast in step 2 ------------------------------------------------------------------


def test_bf16_transfer_trains_a_float32_pack_and_leaves_the_body_alone(tmp_path):
    model, tokenizer = make_mlm("bert")
    body, _ = split_model(model, tokenizer, "en")
    before = {k: v.clone() for k, v in body.tensors.items()}
    de_tok = train_tokenizer(DE_TEXT, 120, family="bert", special_ids=body.special_tokens, min_frequency=1)
    common = dict(
        language="de",
        seq_len=32,
        batch_size=4,
        lr=1e-2,
        progress=False,
        checkpoint_every=None,
        max_steps=6,
    )
    half = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(precision="bf16", **common),
        output=tmp_path / "bf16",
        eval_texts=DE_TEXT[:8],
    )
    full = run_transfer(
        body, de_tok, DE_TEXT, TransferConfig(**common), output=tmp_path / "fp32", eval_texts=DE_TEXT[:8]
    )
    assert half.pack.word_embeddings.dtype == torch.float32
    assert half.pack.provenance["precision"] == "bf16" and "precision" not in full.pack.provenance
    assert all(torch.equal(before[k], body.tensors[k]) for k in before)
    # Same data, same start: bf16 changes rounding, not what is learned.
    assert half.result.first_metric("eval_mlm_loss") == full.result.first_metric("eval_mlm_loss")
    assert abs(half.result.last_metric("eval_mlm_loss") - full.result.last_metric("eval_mlm_loss")) < 0.05
    assert half.result.last_metric("eval_mlm_loss") < half.result.first_metric("eval_mlm_loss")
    with pytest.raises(EmbswapError, match="unknown precision"):
        run_transfer(body, de_tok, DE_TEXT, TransferConfig(precision="fp8", **common), output=None)


# --- compose: memory-mapped tensors taken over, not copied -----------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_compose_from_paths_equals_compose_from_objects(tmp_path, name):
    model, tokenizer = make_mlm(name)
    body, pack = split_model(model, tokenizer, "en")
    body.save_pretrained(tmp_path / "body")
    pack.save_pretrained(tmp_path / "pack")
    copied, _ = compose(body, pack)
    adopted, _ = compose(tmp_path / "body", tmp_path / "pack")
    batch = tokenizer(EN_TEXT[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(copied(**batch).logits, adopted(**batch).logits)
    assert output_layer(adopted).weight is word_embeddings(adopted).weight
    assert _tie_groups(adopted) == _tie_groups(copied)
    assert all(p.dtype == torch.float32 for p in adopted.parameters())


def test_compose_takes_over_only_what_it_read_itself(tmp_path, monkeypatch):
    composing = importlib.import_module("embswap.compose")  # the package exports a function of that name

    body, en, _, _ = _two_packs("bert")
    body.save_pretrained(tmp_path / "body")
    en.save_pretrained(tmp_path / "pack")
    seen = []
    real = composing.load_composed
    monkeypatch.setattr(
        composing,
        "load_composed",
        lambda model, state, take_over: seen.append(take_over) or real(model, state, take_over=take_over),
    )
    compose(tmp_path / "body", tmp_path / "pack")
    compose(body, tmp_path / "pack")
    compose(tmp_path / "body", en)
    compose(tmp_path / "body", en.to(torch.bfloat16))
    assert seen == [True, False, False, False]


def test_composed_model_never_writes_to_artifacts(tmp_path):
    body, en, _, _ = _two_packs("bert")
    task = random_task(body, en)
    # Objects passed in are copied: training the model does not change them.
    body_before = {k: v.clone() for k, v in body.tensors.items()}
    pack_before = en.word_embeddings.clone()
    model, _ = compose(body, en, task)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(body.tensors[k], v) for k, v in body_before.items())
    assert torch.equal(en.word_embeddings, pack_before)
    # Tensors taken over from files are private copy-on-write mappings: the files stay as they were.
    body.save_pretrained(tmp_path / "body")
    en.save_pretrained(tmp_path / "pack")
    task.save_pretrained(tmp_path / "task")
    files = sorted(p for p in tmp_path.rglob("*.safetensors"))
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    model, _ = compose(tmp_path / "body", tmp_path / "pack", tmp_path / "task")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in files] == digests
    reference, _ = compose(tmp_path / "body", tmp_path / "pack", tmp_path / "task")
    assert not torch.equal(next(reference.parameters()), next(model.parameters()))


# --- half-precision packs and tables ---------------------------------------------------------------


def test_pack_to_half_precision_round_trips(tmp_path):
    body, en, _, _ = _two_packs("bert")
    half = en.to(torch.bfloat16)
    assert half.word_embeddings.dtype == half.output_bias.dtype == torch.bfloat16
    assert en.word_embeddings.dtype == torch.float32  # the original is untouched
    loaded = LanguagePack.from_pretrained(half.save_pretrained(tmp_path / "pack"))
    assert loaded.word_embeddings.dtype == torch.bfloat16
    assert torch.equal(loaded.word_embeddings, half.word_embeddings)
    assert loaded.provenance["dtype"] == "bfloat16"
    model, _ = compose(body, tmp_path / "pack")
    assert torch.equal(word_embeddings(model).weight, half.word_embeddings.float())
    assert word_embeddings(model).weight.dtype == torch.float32
    with pytest.raises(IncompatibleArtifactError, match="floating point"):
        en.to(torch.int8)


@pytest.mark.parametrize("name", ["bert", "roberta", "distilbert", "deberta-v2"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_table_equals_packs_stored_in_half_precision(name, dtype):
    body, en, de, tokenizer = _two_packs(name)
    multi = MultiLanguageModel(body, {"en": en, "de": de}, table_dtype=dtype)
    assert multi.embedding.weight.dtype == dtype
    for pack, texts in ((de, DE_TEXT[:3]), (en, EN_TEXT[:3]), (de, DE_TEXT[3:5])):
        multi.set_language(pack.language)
        single, _ = compose(body, pack.to(dtype))
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            assert torch.equal(multi(**batch).logits, single(**batch).logits)


def test_half_table_mixed_batch_equals_single_language():
    body, en, de, _ = _two_packs("bert")
    task = random_task(body, en)
    task.special_rows = {}  # special rows are the task's (float32); here only the packs are half
    multi = MultiLanguageModel(body, {"en": en, "de": de}, task, table_dtype=torch.bfloat16)
    _assert_mixed_batch_equals_single(
        multi, {"en": en, "de": de}, lambda pack: compose(body, pack.to(torch.bfloat16), task)[0]
    )


def _assert_mixed_batch_equals_single(multi, packs: dict, single_model) -> None:
    """A batch mixing English and German through ``multi`` gives, row for row, the logits of
    ``single_model(pack)`` on the whole batch."""
    texts, langs = [EN_TEXT[0], DE_TEXT[1], EN_TEXT[2], DE_TEXT[3]], ["en", "de", "en", "de"]
    batch = multi.tokenize(texts, langs)
    with torch.no_grad():
        mixed = multi(batch["input_ids"], languages=langs, attention_mask=batch["attention_mask"]).logits
        for lang, pack in packs.items():
            single = single_model(pack)
            rows = [i for i, tag in enumerate(langs) if tag == lang]
            out = single(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            assert torch.equal(mixed[rows], out[rows])


def test_switching_survives_moving_the_model():
    body, en, de, tokenizer = _two_packs("bert")
    multi = MultiLanguageModel(body, {"en": en, "de": de})
    multi.set_language("de")
    multi.to(torch.float64)
    multi.set_language("en")
    multi.set_language("de")
    single, _ = compose(body, de)
    single.to(torch.float64)
    batch = tokenizer(DE_TEXT[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(multi(**batch).logits, single(**batch).logits)
    assert output_layer(multi.model).weight.data_ptr() == multi.embedding.weight[en.vocab_size :].data_ptr()
    with pytest.raises(EmbswapError, match="not loaded"):
        multi.set_language("fr")


# --- the benchmarks' synthetic vocabularies ---------------------------------------------------------


def test_synthetic_tokenizer_has_exact_size_and_one_token_per_word():
    import _common

    tokenizer = _common.synthetic_tokenizer(1000)
    assert len(tokenizer) == 1000
    assert [
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.mask_token_id,
    ] == [0, 1, 2, 3, 4]
    text = _common.synthetic_texts(1000, 50, seed=0, words_per_line=50)[0]
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == 52 and ids[0] == 2 and ids[-1] == 3 and min(ids[1:-1]) >= 5


# --- step 2: lean activations, deferred output-layer gradient, a shared frozen body -----------------


def _plain_mlm_loss(model, batch):
    """mlm_loss without lean_activations: the reference the lean path must equal bit for bit."""
    import torch.nn.functional as F

    from embswap.architectures import mlm_head_logits
    from embswap.train.mlm import IGNORE_INDEX

    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    where = batch["labels"] != IGNORE_INDEX
    return F.cross_entropy(mlm_head_logits(model, hidden[where]).float(), batch["labels"][where])


def _step2_setup(name):
    from embswap.train.mlm import MLMBatches, build_sequences, tokenize_texts

    model, tokenizer = make_mlm(name)
    model.train()  # dropout on, as in step 2
    for param in model.parameters():
        param.requires_grad_(False)
    word_embeddings(model).weight.requires_grad_(True)
    output_layer(model).bias.requires_grad_(True)
    ids = tokenize_texts(tokenizer, EN_TEXT)
    sequences = build_sequences(ids, 24, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, mode="group")
    return model, MLMBatches(sequences, tokenizer, batch_size=6, seed=0)(0)  # padded: attention masks in play


def _loss_and_grads(model, batch, loss_fn):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same dropout draws for both paths
    loss = loss_fn(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", FAMILIES)
def test_lean_step2_loss_and_gradients_equal_the_plain_path_exactly(name):
    from embswap.train.mlm import mlm_loss

    model, batch = _step2_setup(name)
    plain_loss, plain_grads = _loss_and_grads(model, batch, _plain_mlm_loss)
    lean_loss, lean_grads = _loss_and_grads(model, batch, mlm_loss)
    assert torch.equal(plain_loss, lean_loss)
    assert plain_grads.keys() == lean_grads.keys() and len(lean_grads) == 2
    for key in plain_grads:
        assert torch.equal(plain_grads[key], lean_grads[key]), key


def test_lean_step2_keeps_fewer_activation_bytes_and_defers_the_output_gradient():
    from embswap.architectures import mlm_head_logits
    from embswap.train.lean import lean_activations

    model, batch = _step2_setup("bert")
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def saved_bytes(lean: bool) -> tuple[int, str]:
        seen: dict[int, int] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in parameters:
                seen[storage.data_ptr()] = storage.nbytes()
            return tensor

        weight = word_embeddings(model).weight
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with lean_activations(tied_weight=weight if lean else None) if lean else torch.enable_grad():
                hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
                logits = mlm_head_logits(model, hidden[0])
        return sum(seen.values()), logits.grad_fn.name()

    plain, plain_head = saved_bytes(lean=False)
    lean, lean_head = saved_bytes(lean=True)
    assert lean < 0.75 * plain, (lean, plain)  # bool dropout masks, attention probabilities recomputed
    assert "_OutputLayer" in lean_head and "_OutputLayer" not in plain_head


def test_lean_activations_leave_evaluation_and_autocast_alone():
    from embswap.train.lean import lean_activations

    x = torch.randn(4, 8, requires_grad=True)
    with lean_activations():
        assert torch.nn.functional.dropout(x, 0.5, training=True).grad_fn.name() != "MulBackward0"
        assert torch.nn.functional.dropout(x, 0.5, training=False) is x
        with torch.no_grad():
            assert torch.nn.functional.dropout(x, 0.5, training=True).grad_fn is None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.nn.functional.dropout(x, 0.5, training=True).grad_fn.name() == "MulBackward0"


def test_step2_model_shares_the_frozen_body_and_copies_what_trains():
    from embswap.architectures import position_embeddings
    from embswap.compose import training_model

    body, en, _, _ = _two_packs("bert")
    model = training_model(body, en, train_positions=True)
    state = model.state_dict()
    frozen = "bert.encoder.layer.0.attention.self.query.weight"
    assert state[frozen].data_ptr() == body.tensors[frozen].data_ptr()
    assert word_embeddings(model).weight.data_ptr() != en.word_embeddings.data_ptr()
    assert torch.equal(word_embeddings(model).weight, en.word_embeddings)
    assert output_layer(model).weight is word_embeddings(model).weight
    table = position_embeddings(model).weight
    assert table.data_ptr() != body.tensors["bert.embeddings.position_embeddings.weight"].data_ptr()
    with torch.no_grad():
        table.add_(1.0)
        word_embeddings(model).weight.add_(1.0)
    assert torch.equal(body.tensors["bert.embeddings.position_embeddings.weight"] + 1.0, table)
    assert not torch.equal(en.word_embeddings, word_embeddings(model).weight)


# --- loading: what a process verified once is not verified again while the file is unchanged ------


@pytest.fixture
def settled(monkeypatch):
    """Files count as settled at once (normally only 2 s after their last write), and nothing is known yet."""
    import embswap.io as eio

    monkeypatch.setattr(eio.checked, "_SETTLE_NS", 0)
    eio.forget_checked()
    yield eio
    eio.forget_checked()


def test_verified_files_are_not_hashed_again_until_they_change(tmp_path, settled, monkeypatch):
    import json

    from embswap.errors import CorruptArtifactError

    _, en, _, _ = _two_packs("bert")
    folder = en.save_pretrained(tmp_path / "pack")
    calls = []
    real = settled.file_sha256
    monkeypatch.setattr(settled.reading, "file_sha256", lambda path: calls.append(path.name) or real(path))
    LanguagePack.from_pretrained(folder)
    first = len(calls)
    assert first == len(json.loads((folder / "config.json").read_text())["files"]) > 1
    LanguagePack.from_pretrained(folder)
    assert len(calls) == first
    weights = folder / "embeddings.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size, same inode: only the change time tells
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="has SHA-256"):
        LanguagePack.from_pretrained(folder)
    assert calls[first:] == ["embeddings.safetensors"]


def _pack_with_hash_counter(tmp_path, eio, monkeypatch):
    """A saved pack, its number of files, and the names of the files hashed from now on."""
    import json

    _, en, _, _ = _two_packs("bert")
    folder = en.save_pretrained(tmp_path / "pack")
    files = len(json.loads((folder / "config.json").read_text())["files"])
    calls = []
    real = eio.file_sha256
    monkeypatch.setattr(eio.reading, "file_sha256", lambda path: calls.append(path.name) or real(path))
    return folder, files, calls


def test_a_later_process_reuses_what_an_earlier_one_verified(tmp_path, settled, monkeypatch):
    from embswap.errors import CorruptArtifactError

    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", str(tmp_path / "checked"))
    folder, files, calls = _pack_with_hash_counter(tmp_path, settled, monkeypatch)
    LanguagePack.from_pretrained(folder)
    assert len(calls) == files
    assert len(list((tmp_path / "checked").glob("*.json"))) == files
    settled.checked._checked.clear()  # what a fresh process starts with
    LanguagePack.from_pretrained(folder)
    assert len(calls) == files  # recalled from the on-disk entries

    weights = folder / "embeddings.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size and inode: the change time alone invalidates the entry
    weights.write_bytes(bytes(data))
    settled.checked._checked.clear()
    with pytest.raises(CorruptArtifactError, match="has SHA-256"):
        LanguagePack.from_pretrained(folder)


def test_check_cache_can_be_switched_off_and_survives_garbage(tmp_path, settled, monkeypatch):
    folder, files, calls = _pack_with_hash_counter(tmp_path, settled, monkeypatch)
    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", "off")
    assert settled.check_cache_dir() is None
    LanguagePack.from_pretrained(folder)
    settled.checked._checked.clear()
    LanguagePack.from_pretrained(folder)
    assert len(calls) == 2 * files  # nothing kept across "processes"

    cache = tmp_path / "checked"
    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", str(cache))
    settled.checked._checked.clear()
    LanguagePack.from_pretrained(folder)
    assert len(calls) == 3 * files and len(list(cache.glob("*.json"))) == files
    for entry in cache.glob("*.json"):
        entry.write_text('{"path": 1, "stamp": "x"')  # torn or foreign entries count as "not verified"
    settled.checked._checked.clear()
    LanguagePack.from_pretrained(folder)
    assert len(calls) == 4 * files

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", str(blocked / "checked"))  # cannot be created: only speed is lost
    settled.checked._checked.clear()
    LanguagePack.from_pretrained(folder)
    assert len(calls) == 5 * files


def test_files_written_just_before_a_check_are_not_remembered(tmp_path, monkeypatch):
    import json

    import embswap.io as eio

    eio.forget_checked()
    _, en, _, _ = _two_packs("bert")
    folder = en.save_pretrained(tmp_path / "pack")
    calls = []
    real = eio.file_sha256
    monkeypatch.setattr(eio.reading, "file_sha256", lambda path: calls.append(path.name) or real(path))
    LanguagePack.from_pretrained(folder)
    LanguagePack.from_pretrained(folder)
    files = len(json.loads((folder / "config.json").read_text())["files"])
    assert len(calls) == 2 * files  # within _SETTLE_NS of the save: a second write could keep the stamp


def test_remembered_fingerprint_still_checks_the_config(tmp_path, settled, monkeypatch):
    import json

    from embswap import Body
    from embswap.errors import CorruptArtifactError

    body, _, _, _ = _two_packs("bert")
    folder = body.save_pretrained(tmp_path / "body")
    assert Body.from_pretrained(folder).fingerprint == body.fingerprint
    artifacts = importlib.import_module("embswap.artifacts")
    hashed = []
    real = artifacts.tensor_bytes
    monkeypatch.setattr(artifacts, "tensor_bytes", lambda tensor: hashed.append(1) or real(tensor))
    assert Body.from_pretrained(folder, verify=False).fingerprint == body.fingerprint
    assert hashed == []  # taken from what this process computed from the same bytes
    config = json.loads((folder / "config.json").read_text())
    config["fingerprint"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptArtifactError, match="hash to"):
        Body.from_pretrained(folder, verify=False)


def test_sums_prove_finiteness_and_overflow_falls_back_to_the_exact_check(tmp_path, settled):
    from embswap.errors import CorruptArtifactError

    big = torch.full((4, 4), 3e38)  # finite, but its sum overflows to inf
    settled.save_tensors({"w": big}, tmp_path / "big.safetensors")
    assert torch.equal(settled.load_tensors(tmp_path / "big.safetensors", check_finite_values=True)["w"], big)
    bad = big.clone()
    bad[2, 1] = float("nan")
    settled.save_tensors({"w": bad}, tmp_path / "bad.safetensors")
    with pytest.raises(CorruptArtifactError, match=r"first at flat index 9"):
        settled.load_tensors(tmp_path / "bad.safetensors", check_finite_values=True)


def test_half_table_output_layer_reads_the_table_without_a_copy():
    body, en, de, tokenizer = _two_packs("bert")
    multi = MultiLanguageModel(body, {"en": en, "de": de}, table_dtype=torch.bfloat16)
    multi.set_language("de")
    weight = output_layer(multi.model).weight
    assert weight.dtype == torch.bfloat16
    assert weight.data_ptr() == multi.embedding.weight[en.vocab_size :].data_ptr()


def test_quantize_rows_round_trip_is_within_half_a_step_per_row():
    from embswap.multilang import dequantize_rows, quantize_rows

    matrix = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.5, -0.75]])
    rows, scales = quantize_rows(matrix)
    assert rows.dtype == torch.int8 and scales.shape == (3, 1)
    assert rows.tolist() == [[64, -127, 32], [0, 0, 0], [127, 64, -32]]  # 63.5 rounds half to even
    assert scales.flatten().tolist() == pytest.approx([1.0 / 127, 1.0, 3.0 / 127])
    back = dequantize_rows(rows, scales)
    assert back[1].tolist() == [0.0, 0.0, 0.0]
    assert torch.all((back - matrix).abs() <= scales / 2 + 1e-7)


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_int8_table_equals_the_dequantized_packs(name):
    from embswap.multilang import int8_pack

    body, en, de, tokenizer = _two_packs(name)
    multi = MultiLanguageModel(body, {"en": en, "de": de}, table_dtype=torch.int8)
    table = multi.embedding.weight
    assert table.dtype == torch.int8 and not table.requires_grad
    assert table.numel() == (en.vocab_size + de.vocab_size) * en.word_embeddings.shape[1]
    for pack, texts in ((de, DE_TEXT[:3]), (en, EN_TEXT[:3]), (de, DE_TEXT[3:5])):
        multi.set_language(pack.language)
        single, _ = compose(body, int8_pack(pack))
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():  # masked-LM logits: the output layer reads the int8 rows too
            assert torch.equal(multi(**batch).logits, single(**batch).logits)
    assert output_layer(multi.model).weight.data_ptr() == table[en.vocab_size :].data_ptr()  # no copy


def test_int8_table_mixed_batch_equals_single_language():
    from embswap.multilang import int8_pack

    body, en, de, _ = _two_packs("bert")
    task = random_task(body, en)
    multi = MultiLanguageModel(body, {"en": en, "de": de}, task, table_dtype=torch.int8)

    def single_model(pack):
        # the task's special rows are written in before quantizing, as the table does
        served = int8_pack(dataclasses.replace(pack, word_embeddings=special_rows_applied(pack, task)))
        return compose(body, served, dataclasses.replace(task, special_rows={}))[0]

    _assert_mixed_batch_equals_single(multi, {"en": en, "de": de}, single_model)
    with pytest.raises(EmbswapError, match="torch.int8"):
        MultiLanguageModel(body, {"en": en}, table_dtype=torch.int16)
