"""The builders of the quality benchmarks' engine (``_grid.py``): the English body, tokenizers, packs,
joint bodies, swap-robust packs and task models, each with the embswap stage that makes it."""

from __future__ import annotations

import json
import shutil
import time

from _common import write_atomic
from _dictionaries import dictionary_for
from _grid_jobs import Job
from _variants import (
    RELEARN_TRANSLATIONS,
    ROBUST,
    SELF,
    TASK_TYPES,
    Variant,
    self_transfer_variant,
    task_key,
    task_recipe,
)

from embswap.store import Store


class GridBuilders:
    """How each kind of job builds its artifact (a mixin of ``_grid.Grid``)."""

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
            from embswap.train.pretrain import PretrainConfig, run_pretrain

            b = self.budget
            self.log(f"body: pretraining English ({b.pretrain_steps} steps, at most {b.pretrain_minutes:g} min)")
            run_pretrain(
                {"en": self.texts("en")},
                store.path,
                PretrainConfig(
                    preset=b.preset_arg,
                    vocab_size=b.vocab_size,
                    max_steps=b.pretrain_steps,
                    max_minutes=b.pretrain_minutes,
                    seq_len=b.mlm_seq_len,
                    max_positions=b.seq_len,
                    batch_size=b.batch_size,
                    lr=b.pretrain_lr,
                    seed=0,
                    progress=self.progress,
                ),
                resume=True,
                data_description={"source": "bible:en", "translations": list(b.english_translations)},
            )
        store.__dict__.pop("body", None)
        write_atomic(
            self.folder / "timings" / "body.json",
            json.dumps({"seconds": round(time.perf_counter() - started, 2), "job": "body"}),
        )

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
        tokenizer = train_tokenizer(
            self.texts(job.language), self.budget.vocab_size, family=body.family, special_ids=body.special_tokens
        )
        with atomic_folder(self.folder / "tokenizers" / job.language) as tmp:
            tokenizer.save_pretrained(str(tmp))

    def build_pack(self, job: Job) -> None:
        from embswap.train.transfer import TransferConfig, run_transfer

        variant, language, b = job.variant, job.language, self.budget
        english = language == SELF
        if english:
            variant = self_transfer_variant(variant)
        init = variant.init
        words = dictionary_for(language)[0] if init == "dictionary" else None
        options = {
            "align_weight": b.align_weight,
            "teacher_cache": str(self.folder / "cache"),
            "align_max_length": b.seq_len,
        }
        if variant.uses_parallel_text:
            options["parallel"] = self.parallel(language)
        texts = self.texts(language) if "mlm" in variant.objective else []
        run_transfer(
            self.store.body,
            self.tokenizer(language),
            texts,
            TransferConfig(
                language="en" if english else language,
                init=init,
                dictionary_limit=variant.dictionary_size if init == "dictionary" else None,
                pos=variant.pos,
                adapters=variant.adapters,
                anchors=variant.anchors,
                objective=variant.objective,
                objective_options=options,
                max_steps=b.pack_steps,
                max_minutes=b.pack_minutes,
                warmup_steps=b.transfer_warmup,
                seq_len=b.mlm_seq_len,
                batch_size=b.batch_size,
                lr=b.transfer_lr,
                seed=variant.seed,
                progress=self.progress,
            ),
            output=self.store.pack_path(self.pack_name(variant, language)),
            reference_pack=self.store.pack("en"),
            dictionary=words,
            resume=True,
            data_description={"mlm": f"bible:{language}", "variant": variant.system},
        )

    def build_joint_body(self, job: Job) -> None:
        from embswap.train.pretrain import PretrainConfig, run_pretrain

        variant, b = job.variant, self.budget
        others = [job.language] if variant.body.startswith("pair") else list(self.multi_languages)
        steps, minutes, vocab_size = self.joint_budget(variant)
        store = self.store_of(variant, job.language)
        run_pretrain(
            {lang: self.texts(lang) for lang in ["en", *others]},
            store.path,
            PretrainConfig(
                preset=b.preset_arg,
                vocab_size=vocab_size,
                vocab="disjoint" if variant.body == "pair-disjoint" else "joint",
                max_steps=steps,
                max_minutes=minutes,
                seq_len=b.mlm_seq_len,
                max_positions=b.seq_len,
                batch_size=b.batch_size,
                lr=b.pretrain_lr,
                seed=variant.seed,
                progress=self.progress,
            ),
            resume=True,
            data_description={"source": "bible", "system": variant.system},
        )

    def build_task(self, job: Job) -> None:
        from embswap.train.finetune import finetune

        variant, b = job.variant, self.budget
        store = self.store_of(variant, job.language or "en")
        extras = self.robust_packs(variant)
        steps, minutes, lr = task_recipe(b, job.task)
        finetune(
            store.body,
            store.pack("en"),
            TASK_TYPES[job.task],
            self.train_rows(job.task),
            labels=self.labels(job.task),
            output=store.task_path(task_key(variant, job.task)),
            lr=lr,
            batch_size=b.batch_size,
            seq_len=b.seq_len,
            seed=variant.seed,
            max_steps=steps,
            max_minutes=minutes,
            resume=True,
            extra_packs=extras or None,
            noise=variant.noise,
            progress=self.progress,
            data_description=f"bible-{job.task}:en:train",
        )

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
        return relearn_l1_packs(
            self.robust_store(variant),
            self.store.pack("en"),
            texts,
            variant.robust_packs,
            body=self.store.body,
            seed=variant.seed,
            max_steps=b.pack_steps,
            max_minutes=b.pack_minutes,
            lr=b.transfer_lr,
            batch_size=b.batch_size,
            seq_len=b.mlm_seq_len,
            warmup_steps=b.transfer_warmup,
            progress=self.progress,
            data_description={"mlm": "bible:en", "translations": list(RELEARN_TRANSLATIONS)},
        )
