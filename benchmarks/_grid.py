"""The engine of the quality benchmarks: recipe variants -> artifacts in one work store -> scores.

Rows register what they need (:meth:`Grid.require`): each language's pack (named by the variant's
step-2 choices, see ``_variants.py``) or joint body, the task (named by the step-3 choices), the
scores. :meth:`Grid.run` builds every missing artifact once, phase by phase (tokenizers, packs and
joint bodies, tasks, scores), in ``jobs`` processes; rows that share a pack or a task reuse it, and
a re-run reuses what is there (every embswap stage saves atomically and resumes from its
checkpoint), so an interrupted benchmark picks up where it stopped. Scores are cached as JSON and
every artifact's wall time is recorded, so a row can say what it cost.

One idea a module: ``_grid_jobs.py`` (what is scheduled), ``_grid_data.py`` (text, pairs, rows),
``_grid_build.py`` (each artifact's builder), ``_grid_score.py`` (scores and learning curves),
``_grid_cost.py`` (recorded and estimated minutes); :class:`Grid` here registers rows and runs the
phases.

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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from _common import write_atomic
from _dictionaries import dictionary_digest, dictionary_for
from _grid_build import GridBuilders
from _grid_cost import GridCosts
from _grid_data import GridData
from _grid_jobs import PHASE_OF, PHASES, Job
from _grid_score import GridScores
from _variants import SELF, Budget, Variant, home_language, pack_key, store_id, task_key

from embswap.errors import EmbswapError
from embswap.store import Store

__all__ = ["Grid", "Job"]


_WORKER: Grid | None = None


def _init_worker(spec: dict) -> None:
    global _WORKER
    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    _WORKER = Grid(**spec, log=lambda message: print(message, flush=True))


def _run_in_worker(job: Job) -> float:
    return _WORKER.run_job(job)


class Grid(GridData, GridBuilders, GridScores, GridCosts):
    """Builds what the registered rows need, phase by phase, in ``jobs`` processes; then answers scores."""

    def __init__(
        self,
        root: str | os.PathLike,
        budget: Budget,
        *,
        body_from: str | os.PathLike | None = None,
        genre_languages: Sequence[str] = (),
        multi_languages: Sequence[str] = (),
        jobs: int = 1,
        threads: int = 1,
        curve: tuple[int, int] = (0, 0),
        progress: bool | None = None,
        log: Callable[[str], None] = print,
    ):
        self.root, self.budget = Path(root), budget
        self.body_from = Path(body_from) if body_from else None
        self.genre_languages, self.multi_languages = tuple(genre_languages), tuple(multi_languages)
        self.jobs, self.threads, self.curve_shape, self.log = jobs, threads, tuple(curve), log
        self.progress = jobs <= 1 if progress is None else progress  # bars from parallel workers would collide
        self.folder = self.root / budget.digest(self._body_source())
        self.store = Store(self.folder / "store")
        # Per phase, artifact -> the first job that asked for it: rows that share an artifact share one job.
        self.needed: dict[str, dict[tuple, Job]] = {k: {} for k in PHASES}
        self.row_jobs: dict[tuple[Variant, str], dict[tuple, Job]] = {}
        self.unavailable: dict[tuple[Variant, str], str] = {}

    def spec(self) -> dict:
        """What a worker process needs to rebuild this grid."""
        return dict(
            root=self.root,
            budget=self.budget,
            body_from=self.body_from,
            genre_languages=self.genre_languages,
            multi_languages=self.multi_languages,
            jobs=1,
            threads=self.threads,
            curve=self.curve_shape,
            progress=False,
        )

    def _body_source(self) -> str:
        if self.body_from is None:
            return "pretrained here"
        config = self._demo_store() / "body" / "config.json"
        if not config.is_file():
            raise EmbswapError(
                f"--body-from {self.body_from}: no body at {config.parent}; give a demo folder or a store"
            )
        return hashlib.sha256(config.read_bytes()).hexdigest()  # the config lists every file's SHA-256

    def _demo_store(self) -> Path:
        return self.body_from / "store" if (self.body_from / "store").is_dir() else self.body_from

    # ----------------------------------------------------------------------------- stores

    def store_of(self, variant: Variant, language: str) -> Store:
        sid = store_id(variant, language)
        return self.store if sid == "main" else Store(self.folder / "joint" / sid / "store")

    # ----------------------------------------------------------------------------- registering rows

    def require(
        self,
        variant: Variant,
        task: str,
        languages: Sequence[str],
        *,
        english: bool = True,
        self_transfer: bool = False,
        controls: bool = True,
    ) -> None:
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
        for job in jobs:
            artifact, phase = self.artifact(job), PHASE_OF.get(job.kind, "score")
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
            pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.spec(),),
            )
        try:
            for phase in PHASES:
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
        return (
            f"{job.kind} {job.task} {job.which or ''} {job.language or 'en'} "
            f"({job.variant.system}, seed {job.variant.seed})"
        )

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

    def run_job(self, job: Job) -> float:
        started = time.perf_counter()
        builders = {
            "tokenizer": self.build_tokenizer,
            "pack": self.build_pack,
            "joint-body": self.build_joint_body,
            "robust": self.build_robust_packs,
            "task": self.build_task,
            "score": self.compute_score,
            "curve": self.compute_curve,
        }
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
