"""The engine of the quality benchmarks: recipe variants -> artifacts in one work store -> scores.

Rows register what they need (:meth:`Grid.require`): each language's pack (named by the variant's
step-2 choices, see ``_variants.py``) or joint body, the task (named by the step-3 choices), the
scores. :meth:`Grid.run` builds every missing artifact once, phase by phase (tokenizers, packs and
joint bodies, tasks, scores), in ``jobs`` processes; rows that share a pack or a task reuse it, and
a re-run reuses what is there (every embswap stage saves atomically and resumes from its
checkpoint), so an interrupted benchmark picks up where it stopped. Scores are cached as JSON and
every artifact's wall time is recorded, so a row can say what it cost.

Work folder, one per budget and body (a changed budget never reuses a stale artifact)::

    WORK/<digest>/store/               English body, packs, tasks (embswap.store.Store)
    WORK/<digest>/joint/<id>/store/    one store per JointPair / JointMulti body
    WORK/<digest>/tokenizers/<name>/   one tokenizer per language, shared by every variant
    WORK/<digest>/scores/, curves/     cached evaluations and learning curves (JSON)
    WORK/<digest>/timings/             wall seconds of every artifact built here
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from _common import write_atomic
from _dictionaries import dictionary_digest, dictionary_for
from _variants import (
    RELEARN_TRANSLATIONS,
    ROBUST,
    SELF,
    TASK_TYPES,
    Budget,
    Variant,
    home_language,
    pack_key,
    self_transfer_variant,
    store_id,
    task_key,
    task_recipe,
)

from embswap.errors import EmbswapError
from embswap.store import Store

# Rough costs for the estimate printed before a run: throughput of the tiny preset on one thread of a
# quiet CPU (measured), and per-job overheads (reading and tokenizing text, saving).
TOKENS_PER_SECOND = {"pretrain": 6000, "transfer": 7700, "finetune": 4000, "eval": 20000}
TOKENS_PER_EXAMPLE = 80  # a genre example (two verses) or a paraphrase pair, in WordPiece tokens
OVERHEAD_MINUTES = {"pack": 0.25, "task": 0.2, "joint-body": 0.6, "tokenizer": 0.3, "align-teacher": 1.0,
                    "score": 0.02}


# --------------------------------------------------------------------------------- data


def _bible():
    from embswap.data import bible

    return bible


def _subsample_ids(ids: Sequence[str], n: int, seed: int = 0) -> set[str]:
    ids = sorted(set(ids))
    if len(ids) <= n:
        return set(ids)
    generator = torch.Generator().manual_seed(seed)
    return {ids[i] for i in torch.randperm(len(ids), generator=generator)[:n].tolist()}


def _provenance(artifact: Path) -> dict:
    """The provenance an artifact's config.json records (empty when it does not exist)."""
    config = artifact / "config.json"
    return json.loads(config.read_text()).get("provenance", {}) if config.is_file() else {}


def _rows_digest(rows: Sequence[dict]) -> str:
    return hashlib.sha256(json.dumps([r["id"] for r in rows]).encode()).hexdigest()[:8]


# --------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One artifact to build or one score to compute; ``which`` (scores): english | pack | self | random."""

    kind: str  # tokenizer | pack | robust | joint-body | task | score | curve
    variant: Variant | None = None
    language: str | None = None
    task: str | None = None
    which: str | None = None


_WORKER: Grid | None = None


def _init_worker(spec: dict) -> None:
    global _WORKER
    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    _WORKER = Grid(**spec, log=lambda message: print(message, flush=True))


def _run_in_worker(job: Job) -> float:
    return _WORKER.run_job(job)


class Grid:
    """Builds what the registered rows need, phase by phase, in ``jobs`` processes; then answers scores."""

    def __init__(self, root: str | os.PathLike, budget: Budget, *, body_from: str | os.PathLike | None = None,
                 genre_languages: Sequence[str] = (), multi_languages: Sequence[str] = (), jobs: int = 1,
                 threads: int = 1, curve: tuple[int, int] = (0, 0), progress: bool | None = None,
                 log: Callable[[str], None] = print):
        self.root, self.budget = Path(root), budget
        self.body_from = Path(body_from) if body_from else None
        self.genre_languages, self.multi_languages = tuple(genre_languages), tuple(multi_languages)
        self.jobs, self.threads, self.curve_shape, self.log = jobs, threads, tuple(curve), log
        self.progress = jobs <= 1 if progress is None else progress  # bars from parallel workers would collide
        self.folder = self.root / budget.digest(self._body_source())
        self.store = Store(self.folder / "store")
        # Per phase, artifact -> the first job that asked for it: rows that share an artifact share one job.
        self.needed: dict[str, dict[tuple, Job]] = {k: {} for k in ("tokenizer", "build", "task", "score")}
        self.row_jobs: dict[tuple[Variant, str], dict[tuple, Job]] = {}
        self.unavailable: dict[tuple[Variant, str], str] = {}

    def spec(self) -> dict:
        """What a worker process needs to rebuild this grid."""
        return dict(root=self.root, budget=self.budget, body_from=self.body_from, genre_languages=self.genre_languages,
                    multi_languages=self.multi_languages, jobs=1, threads=self.threads, curve=self.curve_shape,
                    progress=False)

    def _body_source(self) -> str:
        if self.body_from is None:
            return "pretrained here"
        config = self._demo_store() / "body" / "config.json"
        if not config.is_file():
            raise EmbswapError(
                f"--body-from {self.body_from}: no body at {config.parent}; give a demo folder or a store")
        return hashlib.sha256(config.read_bytes()).hexdigest()  # the config lists every file's SHA-256

    def _demo_store(self) -> Path:
        return self.body_from / "store" if (self.body_from / "store").is_dir() else self.body_from

    # ----------------------------------------------------------------------------- stores and data

    def store_of(self, variant: Variant, language: str) -> Store:
        sid = store_id(variant, language)
        return self.store if sid == "main" else Store(self.folder / "joint" / sid / "store")

    def texts(self, name: str) -> list[str]:
        bible = _bible()
        if name in (SELF, ROBUST):
            texts = [v.text for code in RELEARN_TRANSLATIONS for v in bible.verses(code)]
        elif name == "en":
            texts = [v.text for code in self.budget.english_translations for v in bible.verses(code)]
        else:
            texts = bible.mlm_text(name)
        return texts[: self.budget.max_lines] if self.budget.max_lines else texts

    def parallel(self, language: str) -> list[dict]:
        bible = _bible()
        codes = RELEARN_TRANSLATIONS if language in (SELF, ROBUST) else bible.LANGUAGES[language]
        pairs = [p for code in codes for p in bible.parallel_pairs("4", code, books=bible.split_books("train"))]
        return pairs[: self.budget.max_pairs] if self.budget.max_pairs else pairs

    def train_rows(self, task: str) -> list[dict]:
        bible = _bible()
        rows = bible.genre_examples("en", "train") if task == "genre" else bible.paraphrase_examples("en", "train")
        if self.budget.max_train_rows:
            keep = _subsample_ids([r["id"] for r in rows], self.budget.max_train_rows)
            rows = [r for r in rows if r["id"] in keep]
        return rows

    def labels(self, task: str) -> list[str]:
        return list(_bible().GENRES) if task == "genre" else ["different", "paraphrase"]

    @lru_cache(maxsize=None)
    def test_rows(self, task: str, language: str) -> tuple[list[dict], str]:
        """The held-out rows of ``task`` in ``language`` (same ids in every genre language) and their id."""
        bible = _bible()
        if task == "genre":
            rows = bible.genre_examples(language, "test", common=["en", *self.genre_languages])
            n = self.budget.eval_examples
        else:
            rows = bible.paraphrase_examples(language, "test")
            n = self.budget.eval_examples // 2  # two rows (paraphrase, different) per verse
        keep = _subsample_ids([r["id"] for r in rows], n)
        rows = [r for r in rows if r["id"] in keep]
        return rows, f"{task}-{language}-{len(rows)}-{_rows_digest(rows)}"

    def majority(self, task: str) -> dict:
        from embswap.evaluate import majority_baseline

        return majority_baseline(self.train_rows(task), self.test_rows(task, "en")[0])

    def tokenizer(self, name: str):
        from embswap.artifacts import load_tokenizer

        folder = self.folder / "tokenizers" / name
        if not (folder / "tokenizer.json").is_file():
            raise EmbswapError(f"tokenizer {name!r} is not built yet (phase order)")
        return load_tokenizer(folder)

    # ----------------------------------------------------------------------------- registering rows

    def require(self, variant: Variant, task: str, languages: Sequence[str], *, english: bool = True,
                self_transfer: bool = False, controls: bool = True) -> None:
        """Register one row: its packs, task and scores (English, self-transfer, each language, controls)."""
        jobs: list[Job] = []
        for language in languages:
            if english:  # the task model on English itself, on every body the row uses
                home = home_language(variant, language)
                jobs += [Job("joint-body", variant, home)] if variant.body != "mono" else []
                jobs += [Job("task", variant, home, task), Job("score", variant, home, task, "english")]
            if variant.body == "mono" and variant.init == "dictionary" and dictionary_for(language) is None:
                self.unavailable[(variant, language)] = "n/a: no dictionary"
                continue
            jobs += self._artifacts(variant, task, language)
            jobs.append(Job("score", variant, language, task, "pack"))
            if controls:
                jobs.append(Job("score", variant, language, task, "random"))
        if self_transfer and variant.body == "mono":
            jobs += [*self._artifacts(variant, task, SELF), Job("score", variant, SELF, task, "self")]
        self._register(variant, task, jobs)

    def require_curve(self, variant: Variant, task: str, language: str) -> None:
        """Register a learning curve: ``variant``'s pack for ``language`` scored after every segment."""
        if variant.init == "dictionary" and dictionary_for(language) is None:
            self.unavailable[(variant, language)] = "n/a: no dictionary"
            return
        jobs = [job for job in self._artifacts(variant, task, language) if job.kind != "pack"]
        self._register(variant, f"curve:{task}", [*jobs, Job("curve", variant, language, task)])

    def _artifacts(self, variant: Variant, task: str, language: str) -> list[Job]:
        """Tokenizer, pack (or joint body), robust packs and task one language of a row needs."""
        if variant.body != "mono":
            home = home_language(variant, language)
            return [Job("joint-body", variant, home), Job("task", variant, home, task)]
        jobs = [Job("tokenizer", language=language), Job("pack", variant, language), Job("task", variant, None, task)]
        if variant.robust_packs:
            jobs.insert(-1, Job("robust", Variant(seed=variant.seed, robust_packs=variant.robust_packs)))
        return jobs

    def _register(self, variant: Variant, row: str, jobs: list[Job]) -> None:
        phase_of = {"tokenizer": "tokenizer", "pack": "build", "robust": "build", "joint-body": "build",
                    "task": "task"}
        for job in jobs:
            artifact, phase = self.artifact(job), phase_of.get(job.kind, "score")
            known = self.needed[phase].get(artifact)
            # One job per seed re-learns the robust packs: the row asking for the most packs sets K.
            if known is None or (job.kind == "robust" and job.variant.robust_packs > known.variant.robust_packs):
                self.needed[phase][artifact] = job
            self.row_jobs.setdefault((variant, row), {}).setdefault(artifact, job)

    # ----------------------------------------------------------------------------- running

    def run(self) -> float:
        """Build everything registered; returns the wall minutes spent."""
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = {"budget": self.budget.describe(), "body_from": str(self.body_from) if self.body_from else None}
        write_atomic(self.folder / "manifest.json", json.dumps(manifest, indent=2))
        self.ensure_body()
        pool = None
        if self.jobs > 1:  # one pool for every phase: a worker loads torch and the corpus once
            pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(self.spec(),))
        try:
            for phase in ("tokenizer", "build", "task", "score"):
                self._execute(phase, list(self.needed[phase].values()), pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return (time.perf_counter() - started) / 60

    def _execute(self, phase: str, jobs: list[Job], pool: ProcessPoolExecutor | None) -> None:
        """Run a phase's missing jobs; every job of a phase needs only earlier phases' artifacts."""
        todo = [job for job in jobs if not self.is_done(job)]
        self.log(f"{phase}: {len(todo)} to do, {len(jobs) - len(todo)} reused")
        if pool is None or len(todo) <= 1:
            finished = ((job, self.run_job(job)) for job in todo)
        else:
            futures = {pool.submit(_run_in_worker, job): job for job in todo}
            finished = ((futures[future], future.result()) for future in as_completed(futures))
        for i, (job, seconds) in enumerate(finished, 1):
            self.log(f"  [{i}/{len(todo)}] {self.describe_job(job)} ({seconds:.0f} s)")

    def pack_name(self, variant: Variant, language: str) -> str:
        """:func:`pack_key`, with the digest of the word list a dictionary init reads."""
        digest = None
        if variant.init == "dictionary" and variant.body == "mono" and language != SELF:
            found = dictionary_for(language)
            digest = dictionary_digest(found[0]) if found else None
        return pack_key(variant, language, digest)

    def describe_job(self, job: Job) -> str:
        if job.kind == "tokenizer":
            return f"tokenizer {job.language}"
        if job.kind == "pack":
            return f"pack {self.pack_name(job.variant, job.language)}"
        if job.kind == "joint-body":
            return f"body {store_id(job.variant, job.language)}"
        if job.kind == "robust":
            return f"robust packs 1-{job.variant.robust_packs} (seed {job.variant.seed})"
        if job.kind == "task":
            return f"task {store_id(job.variant, job.language or 'en')}/{task_key(job.variant, job.task)}"
        return (f"{job.kind} {job.task} {job.which or ''} {job.language or 'en'} "
                f"({job.variant.system}, seed {job.variant.seed})")

    def timing_path(self, job: Job) -> Path:
        return self.folder / "timings" / (hashlib.sha256(repr(self.artifact(job)).encode()).hexdigest()[:16] + ".json")

    def artifact(self, job: Job) -> tuple:
        """What a job builds, independent of which row asked for it (shared artifacts share timings)."""
        if job.kind == "tokenizer":
            return ("tokenizer", job.language)
        if job.kind == "pack":
            return ("pack", self.pack_name(job.variant, job.language))
        if job.kind == "joint-body":
            return ("joint-body", store_id(job.variant, job.language))
        if job.kind == "robust":
            return ("robust", job.variant.seed)
        if job.kind == "task":
            return ("task", store_id(job.variant, job.language or "en"), task_key(job.variant, job.task))
        return (job.kind, str(self.score_path(job)))

    def seconds(self, job: Job) -> float:
        path = self.timing_path(job)
        return json.loads(path.read_text())["seconds"] if path.is_file() else 0.0

    def run_job(self, job: Job) -> float:
        started = time.perf_counter()
        builders = {"tokenizer": self.build_tokenizer, "pack": self.build_pack, "joint-body": self.build_joint_body,
                    "robust": self.build_robust_packs, "task": self.build_task, "score": self.compute_score,
                    "curve": self.compute_curve}
        builders[job.kind](job)
        seconds = time.perf_counter() - started
        write_atomic(self.timing_path(job), json.dumps({"seconds": round(seconds, 2), "job": self.describe_job(job)}))
        return seconds

    def is_done(self, job: Job) -> bool:
        if job.kind == "tokenizer":
            return (self.folder / "tokenizers" / job.language / "tokenizer.json").is_file()
        if job.kind == "pack":
            return self.store.pack_path(self.pack_name(job.variant, job.language)).exists()
        if job.kind == "joint-body":
            return self.store_of(job.variant, job.language).body_path.exists()
        if job.kind == "robust":
            store = self.robust_store(job.variant)
            return all(store.pack_path(name).exists() for name in self.robust_names(job.variant))
        if job.kind == "task":
            return self.store_of(job.variant, job.language or "en").task_path(task_key(job.variant, job.task)).exists()
        if job.kind == "curve":
            points = self.curve_points(job)
            return len(points) == self.curve_shape[0] + 1
        return self.score_path(job).is_file()

    # ----------------------------------------------------------------------------- builders

    def ensure_body(self) -> None:
        store = self.store
        if store.body_path.exists() and "en" in store.languages:
            return
        started = time.perf_counter()
        if self.body_from is not None:
            from embswap.io import atomic_folder

            source = self._demo_store()
            for sub in ("body", "packs/en"):
                with atomic_folder(store.path / sub) as tmp:
                    shutil.copytree(source / sub, tmp, dirs_exist_ok=True)
            self.log(f"body: copied from {source}")
        else:
            from embswap.train.pretrain import run_pretrain

            b = self.budget
            self.log(f"body: pretraining English ({b.pretrain_steps} steps, at most {b.pretrain_minutes:g} min)")
            run_pretrain({"en": self.texts("en")}, store.path, preset=b.preset_arg, vocab_size=b.vocab_size,
                         max_steps=b.pretrain_steps, max_minutes=b.pretrain_minutes, seq_len=b.mlm_seq_len,
                         max_positions=b.seq_len, batch_size=b.batch_size, lr=b.pretrain_lr, seed=0, resume=True,
                         progress=self.progress,
                         data_description={"source": "bible:en", "translations": list(b.english_translations)})
        store.__dict__.pop("body", None)
        write_atomic(self.folder / "timings" / "body.json",
                      json.dumps({"seconds": round(time.perf_counter() - started, 2), "job": "body"}))

    def english_cost(self) -> tuple[int, float]:
        """Steps and minutes the English body trained (what equal compute for joint bodies starts from)."""
        provenance = self.store.body.provenance
        return int(provenance.get("steps", self.budget.pretrain_steps)), float(provenance.get("minutes", 0.0))

    def joint_budget(self, variant: Variant) -> tuple[int, float, int]:
        """(steps, minute cap, vocabulary size) of a joint body: the English body's steps plus one pack's
        per L2. Every step is a batch of the same size and length, so steps are equal MLM tokens."""
        steps, _ = self.english_cost()
        n = 1 if variant.body.startswith("pair") else len(self.multi_languages)
        # Disjoint: V rows per language; JointPair joint: one 2V vocabulary (the same rows in all);
        # JointMulti: one 4V vocabulary, the paper's JointMulti-32k at V = 8k.
        vocab = self.budget.vocab_size * {"pair-disjoint": 1, "pair-joint": 2, "multi": 4}[variant.body]
        b = self.budget
        return steps + n * b.pack_steps, b.pretrain_minutes + n * b.pack_minutes, vocab

    def build_tokenizer(self, job: Job) -> None:
        from embswap.io import atomic_folder
        from embswap.train.tokenizer import train_tokenizer

        body = self.store.body
        tokenizer = train_tokenizer(self.texts(job.language), self.budget.vocab_size, family=body.family,
                                    special_ids=body.special_tokens)
        with atomic_folder(self.folder / "tokenizers" / job.language) as tmp:
            tokenizer.save_pretrained(str(tmp))

    def build_pack(self, job: Job) -> None:
        from embswap.train.transfer import run_transfer

        variant, language, b = job.variant, job.language, self.budget
        english = language == SELF
        if english:
            variant = self_transfer_variant(variant)
        init = variant.init
        words = dictionary_for(language)[0] if init == "dictionary" else None
        options = {"align_weight": b.align_weight, "teacher_cache": str(self.folder / "cache"),
                   "align_max_length": b.seq_len}
        if variant.uses_parallel_text:
            options["parallel"] = self.parallel(language)
        texts = self.texts(language) if "mlm" in variant.objective else []
        run_transfer(
            self.store.body, self.tokenizer(language), texts, language="en" if english else language,
            output=self.store.pack_path(self.pack_name(variant, language)), init=init,
            reference_pack=self.store.pack("en"), dictionary=words,
            dictionary_limit=variant.dictionary_size if init == "dictionary" else None, pos=variant.pos,
            adapters=variant.adapters, anchors=variant.anchors, objective=variant.objective,
            objective_options=options, max_steps=b.pack_steps, max_minutes=b.pack_minutes,
            warmup_steps=b.transfer_warmup, seq_len=b.mlm_seq_len, batch_size=b.batch_size, lr=b.transfer_lr,
            seed=variant.seed, resume=True, progress=self.progress,
            data_description={"mlm": f"bible:{language}", "variant": variant.system},
        )

    def build_joint_body(self, job: Job) -> None:
        from embswap.train.pretrain import run_pretrain

        variant, b = job.variant, self.budget
        others = [job.language] if variant.body.startswith("pair") else list(self.multi_languages)
        steps, minutes, vocab_size = self.joint_budget(variant)
        store = self.store_of(variant, job.language)
        run_pretrain({lang: self.texts(lang) for lang in ["en", *others]}, store.path, preset=b.preset_arg,
                     vocab_size=vocab_size, vocab="disjoint" if variant.body == "pair-disjoint" else "joint",
                     max_steps=steps, max_minutes=minutes, seq_len=b.mlm_seq_len, max_positions=b.seq_len,
                     batch_size=b.batch_size, lr=b.pretrain_lr, seed=variant.seed, resume=True,
                     progress=self.progress, data_description={"source": "bible", "system": variant.system})

    def build_task(self, job: Job) -> None:
        from embswap.train.finetune import finetune

        variant, b = job.variant, self.budget
        store = self.store_of(variant, job.language or "en")
        extras = self.robust_packs(variant)
        steps, minutes, lr = task_recipe(b, job.task)
        finetune(store.body, store.pack("en"), TASK_TYPES[job.task], self.train_rows(job.task),
                 labels=self.labels(job.task), output=store.task_path(task_key(variant, job.task)),
                 lr=lr, batch_size=b.batch_size, seq_len=b.seq_len, seed=variant.seed,
                 max_steps=steps, max_minutes=minutes, resume=True, extra_packs=extras or None,
                 noise=variant.noise, progress=self.progress, data_description=f"bible-{job.task}:en:train")

    # ----------------------------------------------------------------------------- swap-robust packs

    def robust_store(self, variant: Variant) -> Store:
        """Where a seed's re-learned English packs live: ``relearn_l1_packs`` names them ``en-robust-i``
        whatever the seed, so each seed keeps its own folder (the body stays the main store's)."""
        return Store(self.folder / "robust" / f"s{variant.seed}")

    def robust_names(self, variant: Variant) -> list[str]:
        from embswap.train.robust import robust_pack_name

        return [robust_pack_name("en", i) for i in range(1, variant.robust_packs + 1)]

    def build_robust_packs(self, job: Job) -> None:
        self._relearn(job.variant, self.texts(ROBUST))

    def robust_packs(self, variant: Variant) -> list:
        """The variant's K re-learned English packs (already built: no text is given, so none is trained)."""
        return self._relearn(variant, []) if variant.robust_packs else []

    def _relearn(self, variant: Variant, texts: list[str]) -> list:
        from embswap.train.robust import relearn_l1_packs

        b = self.budget
        return relearn_l1_packs(self.robust_store(variant), self.store.pack("en"), texts, variant.robust_packs,
                                body=self.store.body, seed=variant.seed, max_steps=b.pack_steps,
                                max_minutes=b.pack_minutes, lr=b.transfer_lr, batch_size=b.batch_size,
                                seq_len=b.mlm_seq_len, warmup_steps=b.transfer_warmup, progress=self.progress,
                                data_description={"mlm": "bible:en", "translations": list(RELEARN_TRANSLATIONS)})

    # ----------------------------------------------------------------------------- scores

    def score_path(self, job: Job) -> Path:
        language = "en" if job.which in ("english", "self") else job.language
        _, test_id = self.test_rows(job.task, language)
        store = store_id(job.variant, job.language)
        if job.kind == "curve":
            name = f"{self.pack_name(job.variant, job.language)}~curve{self.curve_shape[0]}x{self.curve_shape[1]}"
            return self.folder / "curves" / store / task_key(job.variant, job.task) / f"{name}__{test_id}.json"
        if job.which == "random":
            pack = f"random~{job.language}~s{job.variant.seed}"
        elif job.which == "english":
            pack = "en"
        else:
            pack = self.pack_name(job.variant, job.language)
        return self.folder / "scores" / store / task_key(job.variant, job.task) / f"{pack}__{test_id}.json"

    def score(self, variant: Variant, task: str, language: str, which: str) -> dict:
        """Cached metrics of one cell; ``{"note": ...}`` when the cell cannot exist (e.g. no dictionary)."""
        if which == "english":
            language = home_language(variant, language)
        elif (variant, language) in self.unavailable:
            return {"note": self.unavailable[(variant, language)]}
        path = self.score_path(Job("score", variant, language, task, which))
        if not path.is_file():
            raise EmbswapError(f"score {path} was not computed; register the row with require() before run()")
        return json.loads(path.read_text())

    def compute_score(self, job: Job) -> None:
        from embswap.evaluate import evaluate

        variant, which = job.variant, job.which
        store = self.store_of(variant, job.language)
        task = store.task(task_key(variant, job.task))
        rows, _ = self.test_rows(job.task, "en" if which in ("english", "self") else job.language)
        if which == "english":
            pack = store.pack("en")
        elif which == "random":
            pack = self.untrained_pack(store, variant, job.language)
        else:
            pack = store.pack(self.pack_name(variant, job.language))
        if which == "self":
            check_unseen(task, pack, self.pack_name(variant, job.language))
        metrics = evaluate(store.body, pack, task, rows)
        write_atomic(self.score_path(job), json.dumps({**metrics, "pack": pack.language, "which": which}))

    def untrained_pack(self, store: Store, variant: Variant, language: str):
        """The control: the language's tokenizer with a random matrix (special rows from English), never trained."""
        from embswap.artifacts import LanguagePack
        from embswap.init import initialize_embeddings

        tokenizer = self.tokenizer(language) if variant.body == "mono" else store.pack(language).tokenizer
        start = initialize_embeddings(store.body, tokenizer, "random", reference_pack=store.pack("en"),
                                      seed=variant.seed)
        return LanguagePack(language=language, tokenizer=tokenizer, word_embeddings=start.word_embeddings,
                            output_bias=start.output_bias, body_fingerprint=store.body.fingerprint,
                            provenance={"init": "random", "trained": False})

    def pack_info(self, variant: Variant, language: str) -> dict | None:
        """What the pack's provenance says about its init and training (None when absent)."""
        store = self.store_of(variant, language)
        path = store.pack_path(self.pack_name(variant, language))
        if not path.exists():
            return None
        provenance = _provenance(path)
        keys = ("init", "steps", "tokens_seen", "minutes", "stopped_by", "mlm_loss", "objective", "anchors")
        return {k: provenance.get(k) for k in keys}

    def row_minutes(self, variant: Variant, row: str) -> float:
        """Wall minutes of every artifact and score the row uses (shared ones counted in full; the
        English body, shared by every MonoTrans row, is not counted; a joint body is)."""
        seconds = 0.0
        for job in self.row_jobs.get((variant, row), {}).values():
            if job.kind == "robust":  # one job may have re-learned more packs than this row reads
                store = self.robust_store(job.variant)
                seconds += sum(60 * _provenance(store.pack_path(name)).get("minutes", 0.0)
                               for name in self.robust_names(job.variant))
            else:
                seconds += self.seconds(job)
        return round(seconds / 60, 2)

    # ----------------------------------------------------------------------------- learning curves

    def curve_points(self, job: Job) -> list[dict]:
        path = self.score_path(job)
        return json.loads(path.read_text())["points"] if path.is_file() else []

    def compute_curve(self, job: Job) -> None:
        """Zero-shot accuracy after every segment of one long transfer (constant rate, resumed segment by segment)."""
        from embswap.evaluate import evaluate
        from embswap.train.transfer import run_transfer

        variant, language, b = job.variant, job.language, self.budget
        segments, segment_steps = self.curve_shape
        task = self.store.task(task_key(variant, job.task))
        rows, _ = self.test_rows(job.task, language)
        points = self.curve_points(job)
        output = self.folder / "curve-packs" / f"{self.pack_name(variant, language)}~{segment_steps}"
        words = dictionary_for(language)[0] if variant.init == "dictionary" else None
        for segment in range(len(points), segments + 1):
            outcome = run_transfer(
                self.store.body, self.tokenizer(language), self.texts(language), language=language, output=output,
                init=variant.init, reference_pack=self.store.pack("en"), dictionary=words,
                dictionary_limit=variant.dictionary_size, anchors=variant.anchors, pos=variant.pos,
                adapters=variant.adapters, objective=variant.objective,
                objective_options={"parallel": self.parallel(language), "align_weight": b.align_weight,
                                   "teacher_cache": str(self.folder / "cache")} if variant.uses_parallel_text else None,
                max_steps=segment * segment_steps, warmup_steps=b.transfer_warmup if segment else 0,
                schedule="constant", seq_len=b.mlm_seq_len, batch_size=b.batch_size, lr=b.transfer_lr,
                seed=variant.seed, resume=segment > 0, progress=self.progress, checkpoint_every=None,
            )
            metrics = evaluate(self.store.body, outcome.pack, task, rows)
            points.append({"steps": outcome.result.step, "tokens": outcome.result.tokens_seen,
                           "minutes": round(outcome.result.elapsed_seconds / 60, 3), **metrics})
            write_atomic(self.score_path(job), json.dumps({"points": points, "variant": variant.system}))

    def curve(self, variant: Variant, task: str, language: str) -> list[dict] | dict:
        if (variant, language) in self.unavailable:
            return {"note": self.unavailable[(variant, language)]}
        return self.curve_points(Job("curve", variant, language, task))

    # ----------------------------------------------------------------------------- estimate

    def estimate(self) -> dict:
        """Minutes the registered work still needs (budgets plus rough overheads), and what it builds."""
        body_minutes = self.body_minutes()
        counts, minutes, teachers = {}, 0.0, set()
        for phase in ("tokenizer", "build", "task", "score"):
            for job in self.needed[phase].values():
                if self.is_done(job):
                    continue
                counts[job.kind] = counts.get(job.kind, 0) + 1
                minutes += self._estimated_minutes(job)
                if job.kind == "pack" and job.variant.uses_parallel_text and job.language not in teachers:
                    teachers.add(job.language)  # the English side of the parallel text is encoded once per language
                    minutes += self._overhead("align-teacher")
        # The body is built alone, then phases run in parallel. The rates above were measured with both
        # cores of a 2-core machine: two 1-thread jobs there take as long as one job alone (measured:
        # reproduce.py estimated 62 min of wall for 2 jobs and took 120), so a job counts as 2 cores.
        wall = body_minutes + minutes / max(1, min(self.jobs, (os.cpu_count() or 2) // 2))
        return {"compute_minutes": round(body_minutes + minutes, 1), "wall_minutes": round(wall, 1),
                "to_build": counts, "jobs": self.jobs}

    def _overhead(self, kind: str) -> float:
        return OVERHEAD_MINUTES[kind] * (0.1 if self.budget.max_lines else 1.0)  # quick runs read little text

    def _speed(self) -> float:
        """How much faster than the tiny preset this model trains (rough: by layers x hidden^2; small
        models are overhead-bound, so at most 4x)."""
        from embswap.train.pretrain import resolve_preset

        dims = resolve_preset(self.budget.preset_arg)[1]
        work = dims["num_hidden_layers"] * dims["hidden_size"] ** 2
        return min(4.0, max(1 / 16, 4 * 256**2 / work))

    def _estimated_minutes(self, job: Job) -> float:
        b, speed = self.budget, self._speed()
        mlm_minutes = b.tokens_per_step / TOKENS_PER_SECOND["transfer"] / speed / 60  # one MLM step
        eval_minutes = b.eval_examples * TOKENS_PER_EXAMPLE / TOKENS_PER_SECOND["eval"] / speed / 60
        if job.kind == "tokenizer":
            return self._overhead("tokenizer")
        if job.kind in ("pack", "robust"):
            per_step = mlm_minutes * (2.0 if job.variant.objective == "mlm+align" else 1.0)  # two batches a step
            packs = job.variant.robust_packs if job.kind == "robust" else 1
            return packs * (b.pack_steps * per_step + self._overhead("pack"))
        if job.kind == "joint-body":
            steps, _, _ = self.joint_budget(job.variant) if self.store.body_path.exists() else (
                b.pretrain_steps + b.pack_steps * (1 if job.variant.body.startswith("pair") else
                                                   len(self.multi_languages)), 0, 0)
            return steps * b.tokens_per_step / TOKENS_PER_SECOND["pretrain"] / speed / 60 + self._overhead("joint-body")
        if job.kind == "task":
            step = b.batch_size * TOKENS_PER_EXAMPLE / TOKENS_PER_SECOND["finetune"] / speed / 60
            return task_recipe(b, job.task)[0] * step + self._overhead("task")
        if job.kind == "curve":
            segments, steps = self.curve_shape
            return segments * steps * mlm_minutes + (segments + 1) * eval_minutes
        return eval_minutes + self._overhead("score")

    def body_minutes(self) -> float:
        """Estimated minutes of the English pretraining (0 when the body exists or is copied)."""
        if self.store.body_path.exists() or self.body_from:
            return 0.0
        b = self.budget
        return b.pretrain_steps * b.tokens_per_step / TOKENS_PER_SECOND["pretrain"] / self._speed() / 60


def check_unseen(task, pack, name: str) -> None:
    """Refuse a self-transfer pack that fine-tuning read: it would not measure a clean swap."""
    from embswap.io import tensor_bytes

    digest = hashlib.sha256(tensor_bytes(pack.word_embeddings)).hexdigest()
    provenance = task.provenance
    seen = {p.get("fingerprint") for p in provenance.get("trained_with_packs", [])}
    seen |= {p.get("digest") for p in provenance.get("robust_packs", [])}
    if digest in seen or digest[:16] in seen:
        raise EmbswapError(f"self-transfer pack {name} was seen in fine-tuning; it cannot measure a clean swap")
