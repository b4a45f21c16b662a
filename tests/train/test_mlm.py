"""Masking, packing, deterministic batches, and masked-only logits equal to full logits."""

import pytest
import torch

from embswap.architectures import mlm_head_logits
from embswap.errors import DataError, UnsupportedModelError
from embswap.train.mlm import (
    IGNORE_INDEX,
    MLMBatches,
    build_sequences,
    full_logits_mlm_loss,
    mask_tokens,
    mlm_loss,
    tokenize_texts,
)
from tests.helpers.models import EN_TEXT, FAMILIES, make_mlm, make_tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_masking_rates_and_specials():
    ids = torch.randint(5, 1000, (64, 128))
    ids[:, 0], ids[:, -1], ids[:, 100:] = 2, 3, 0  # [CLS], [SEP], padding
    gen = torch.Generator().manual_seed(0)
    inputs, labels = mask_tokens(
        ids, never_mask=torch.tensor([0, 1, 2, 3, 4]), mask_id=4, replacement_ids=torch.arange(5, 1000), generator=gen
    )
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 0].any() and not chosen[:, 100:].any() and not chosen[:, 127].any()
    maskable = 64 * 98
    assert abs(chosen.sum().item() / maskable - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (inputs == 4) & chosen
    replaced = (inputs != ids) & (inputs != 4) & chosen
    kept = (inputs == ids) & chosen
    n = chosen.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.03
    assert abs(replaced.sum().item() / n - 0.1) < 0.03
    assert abs(kept.sum().item() / n - 0.1) < 0.03
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else is touched


def test_at_least_one_token_is_masked():
    ids = torch.tensor([[2, 7, 3]])
    gen = torch.Generator().manual_seed(0)
    _, labels = mask_tokens(
        ids,
        never_mask=torch.tensor([0, 2, 3]),
        mask_id=4,
        replacement_ids=torch.arange(5, 9),
        generator=gen,
        probability=0.0,
    )
    assert labels.tolist() == [[IGNORE_INDEX, 7, IGNORE_INDEX]]


def test_packing_keeps_every_token_in_order():
    lists = [[10 + i] * (i + 1) for i in range(30)]
    seqs = build_sequences(lists, 16, cls_id=2, sep_id=3, mode="pack")
    assert all(len(s) <= 16 and s[0] == 2 and s[-1] == 3 for s in seqs)
    assert all(len(s) == 16 for s in seqs[:-1])  # no padding needed but in the last one
    stream = [t for s in seqs for t in s[1:-1].tolist()]
    expected = []
    for ids in lists:
        expected += ([3] if expected else []) + ids
    assert stream == expected


def test_group_mode_keeps_texts_apart_and_cuts_long_ones():
    seqs = build_sequences([[7] * 5, [8] * 30], 16, cls_id=2, sep_id=3, mode="group")
    assert [len(s) for s in seqs] == [7, 16, 16, 4]
    with pytest.raises(DataError, match="packing mode"):
        build_sequences([[7]], 16, cls_id=2, sep_id=3, mode="zip")


def _batches(tokenizer, **kw):
    seqs = build_sequences(
        tokenize_texts(tokenizer, EN_TEXT), 24, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id
    )
    return MLMBatches(seqs, tokenizer, batch_size=4, seed=0, **kw)


def test_batches_are_a_function_of_seed_and_step():
    tokenizer = make_tokenizer("bert")
    a, b = _batches(tokenizer), _batches(tokenizer)
    for step in (0, 5, 3, 17):
        x, y = a(step), b(step)
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a(0)["input_ids"], a(1)["input_ids"])
    # Two processes split the same global batch row-wise.
    whole = a(2)
    first, second = a(2, 0, 2), a(2, 1, 2)
    assert torch.equal(first["input_ids"], whole["input_ids"][0::2])
    assert torch.equal(second["labels"], whole["labels"][1::2])
    # Padding is never a label.
    assert not (whole["labels"][whole["attention_mask"] == 0] != IGNORE_INDEX).any()


def test_grouped_batches_cover_the_epoch():
    tokenizer = make_tokenizer("bert")
    seqs = build_sequences(tokenize_texts(tokenizer, EN_TEXT), 24, cls_id=2, sep_id=3, mode="group")
    batches = MLMBatches(seqs, tokenizer, batch_size=4, seed=0, group_by_length=True)
    rows = torch.cat([batches._epoch(0)[i] for i in range(batches.batches_per_epoch)])
    assert len(set(rows.tolist())) == len(rows) == batches.batches_per_epoch * 4


@pytest.mark.parametrize("name", FAMILIES)
def test_masked_only_logits_equal_full_logits(name):
    model, tokenizer = make_mlm(name)
    batch = _batches(tokenizer)(0)
    assert (batch["labels"] != IGNORE_INDEX).sum() > 0
    results = []
    for loss_fn in (mlm_loss, full_logits_mlm_loss):
        model.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (masked_loss, masked_grads), (full_loss, full_grads) = results
    assert torch.allclose(masked_loss, full_loss, rtol=1e-6, atol=1e-7)
    assert masked_grads.keys() == full_grads.keys()
    for key in full_grads:
        assert torch.allclose(masked_grads[key], full_grads[key], rtol=1e-5, atol=1e-7), key


def test_mlm_head_logits_refuses_a_bare_encoder():
    model, _ = make_mlm("bert")
    with pytest.raises(UnsupportedModelError, match="masked-LM head"):
        mlm_head_logits(model.base_model, torch.zeros(1, 32))
