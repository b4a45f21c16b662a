"""The scores of the quality benchmarks' engine (``_grid.py``): zero-shot metrics of each cell and its
controls, cached as JSON, and learning curves (accuracy after every segment of one long transfer)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from _common import write_atomic
from _dictionaries import dictionary_for
from _grid_data import _provenance
from _grid_jobs import Job
from _variants import Variant, home_language, store_id, task_key

from embswap.errors import EmbswapError
from embswap.store import Store


class GridScores:
    """Computes, caches and answers scores and curves (a mixin of ``_grid.Grid``)."""

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
        from embswap.init import untrained_pack

        tokenizer = self.tokenizer(language) if variant.body == "mono" else store.pack(language).tokenizer
        return untrained_pack(store.body, tokenizer, language, reference_pack=store.pack("en"), seed=variant.seed)

    def pack_info(self, variant: Variant, language: str) -> dict | None:
        """What the pack's provenance says about its init and training (None when absent)."""
        store = self.store_of(variant, language)
        path = store.pack_path(self.pack_name(variant, language))
        if not path.exists():
            return None
        provenance = _provenance(path)
        keys = ("init", "steps", "tokens_seen", "minutes", "stopped_by", "mlm_loss", "objective", "anchors")
        return {k: provenance.get(k) for k in keys}

    # ----------------------------------------------------------------------------- learning curves

    def curve_points(self, job: Job) -> list[dict]:
        path = self.score_path(job)
        return json.loads(path.read_text())["points"] if path.is_file() else []

    def compute_curve(self, job: Job) -> None:
        """Zero-shot accuracy after every segment of one long transfer (constant rate, resumed segment by segment)."""
        from embswap.evaluate import evaluate
        from embswap.train.transfer import TransferConfig, run_transfer

        variant, language, b = job.variant, job.language, self.budget
        segments, segment_steps = self.curve_shape
        task = self.store.task(task_key(variant, job.task))
        rows, _ = self.test_rows(job.task, language)
        points = self.curve_points(job)
        output = self.folder / "curve-packs" / f"{self.pack_name(variant, language)}~{segment_steps}"
        words = dictionary_for(language)[0] if variant.init == "dictionary" else None
        for segment in range(len(points), segments + 1):
            outcome = run_transfer(
                self.store.body,
                self.tokenizer(language),
                self.texts(language),
                TransferConfig(
                    language=language,
                    init=variant.init,
                    dictionary_limit=variant.dictionary_size,
                    anchors=variant.anchors,
                    pos=variant.pos,
                    adapters=variant.adapters,
                    objective=variant.objective,
                    objective_options={
                        "parallel": self.parallel(language),
                        "align_weight": b.align_weight,
                        "teacher_cache": str(self.folder / "cache"),
                    }
                    if variant.uses_parallel_text
                    else None,
                    max_steps=segment * segment_steps,
                    warmup_steps=b.transfer_warmup if segment else 0,
                    schedule="constant",
                    seq_len=b.mlm_seq_len,
                    batch_size=b.batch_size,
                    lr=b.transfer_lr,
                    seed=variant.seed,
                    progress=self.progress,
                    checkpoint_every=None,
                ),
                output=output,
                reference_pack=self.store.pack("en"),
                dictionary=words,
                resume=segment > 0,
            )
            metrics = evaluate(self.store.body, outcome.pack, task, rows)
            points.append(
                {
                    "steps": outcome.result.step,
                    "tokens": outcome.result.tokens_seen,
                    "minutes": round(outcome.result.elapsed_seconds / 60, 3),
                    **metrics,
                }
            )
            write_atomic(self.score_path(job), json.dumps({"points": points, "variant": variant.system}))

    def curve(self, variant: Variant, task: str, language: str) -> list[dict] | dict:
        if (variant, language) in self.unavailable:
            return {"note": self.unavailable[(variant, language)]}
        return self.curve_points(Job("curve", variant, language, task))


def check_unseen(task, pack, name: str) -> None:
    """Refuse a self-transfer pack that fine-tuning read: it would not measure a clean swap."""
    from embswap.io import tensor_bytes

    digest = hashlib.sha256(tensor_bytes(pack.word_embeddings)).hexdigest()
    provenance = task.provenance
    seen = {p.get("fingerprint") for p in provenance.get("trained_with_packs", [])}
    seen |= {p.get("digest") for p in provenance.get("robust_packs", [])}
    if digest in seen or digest[:16] in seen:
        raise EmbswapError(f"self-transfer pack {name} was seen in fine-tuning; it cannot measure a clean swap")
