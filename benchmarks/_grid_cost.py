"""What the quality benchmarks' work costs (``_grid.py``): the wall time every artifact took, a row's
minutes, and the estimate printed before a run."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from _grid_data import _provenance
from _grid_jobs import PHASES, Job
from _variants import Variant, task_recipe

# Rough costs for the estimate printed before a run: throughput of the tiny preset on one thread of a
# quiet CPU (measured), and per-job overheads (reading and tokenizing text, saving).
TOKENS_PER_SECOND = {"pretrain": 6000, "transfer": 7700, "finetune": 4000, "eval": 20000}
TOKENS_PER_EXAMPLE = 80  # a genre example (two verses) or a paraphrase pair, in WordPiece tokens
OVERHEAD_MINUTES = {"pack": 0.25, "task": 0.2, "joint-body": 0.6, "tokenizer": 0.3, "align-teacher": 1.0, "score": 0.02}


class GridCosts:
    """Recorded and estimated minutes (a mixin of ``_grid.Grid``)."""

    def timing_path(self, job: Job) -> Path:
        return self.folder / "timings" / (hashlib.sha256(repr(self.artifact(job)).encode()).hexdigest()[:16] + ".json")

    def seconds(self, job: Job) -> float:
        path = self.timing_path(job)
        return json.loads(path.read_text())["seconds"] if path.is_file() else 0.0

    def row_minutes(self, variant: Variant, row: str) -> float:
        """Wall minutes of every artifact and score the row uses (shared ones counted in full; the
        English body, shared by every MonoTrans row, is not counted; a joint body is)."""
        seconds = 0.0
        for job in self.row_jobs.get((variant, row), {}).values():
            if job.kind == "robust":  # one job may have re-learned more packs than this row reads
                store = self.robust_store(job.variant)
                seconds += sum(
                    60 * _provenance(store.pack_path(name)).get("minutes", 0.0)
                    for name in self.robust_names(job.variant)
                )
            else:
                seconds += self.seconds(job)
        return round(seconds / 60, 2)

    def estimate(self) -> dict:
        """Minutes the registered work still needs (budgets plus rough overheads), and what it builds."""
        body_minutes = self.body_minutes()
        counts, minutes, teachers = {}, 0.0, set()
        for phase in PHASES:
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
        return {
            "compute_minutes": round(body_minutes + minutes, 1),
            "wall_minutes": round(wall, 1),
            "to_build": counts,
            "jobs": self.jobs,
        }

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
            steps, _, _ = (
                self.joint_budget(job.variant)
                if self.store.body_path.exists()
                else (
                    b.pretrain_steps
                    + b.pack_steps * (1 if job.variant.body.startswith("pair") else len(self.multi_languages)),
                    0,
                    0,
                )
            )
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
