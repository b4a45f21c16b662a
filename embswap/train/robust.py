"""Re-learned L1 packs for swap-robust fine-tuning (docs/method.md#swap-robust-fine-tuning).

At laptop scale a pack re-learned by step 2 lands in another basis than the one fine-tuning read,
so a task model trained on the L1 pack alone cannot read it (docs/method.md#the-basis-problem). Swap-robust
fine-tuning re-learns K extra L1 packs, exactly as step 2 learns any pack (the L1 pack's own
tokenizer, a random matrix, MLM on L1 text, the body frozen), and step 3 reads its batches
through the L1 pack and these in turn, so the task model learns features that re-learning
reproduces. The packs live in the store as ``{l1}-robust-{i}`` and are reused by later runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence

from ..artifacts import Body, LanguagePack
from ..errors import DataError, IncompatibleArtifactError
from ..store import Store
from .checkpoint import checkpoint_dir_for
from .transfer import TransferConfig, run_transfer


def robust_store(body: str | os.PathLike | None, store: Store | str | os.PathLike | None = None) -> Store | None:
    """Where re-learned packs are kept: ``store`` when given, else the store ``body`` (``STORE/body``) lies in;
    None when there is neither (a loose body folder or a Hub id)."""
    if store is not None:
        return store if isinstance(store, Store) else Store(store)
    return Store.of_body(body)


def robust_pack_name(language: str, index: int) -> str:
    """The store name of the ``index``-th (1-based) re-learned pack of ``language``."""
    return f"{language}-robust-{index}"


def _check_reusable(store: Store, name: str, l1_pack: LanguagePack, objective: str) -> LanguagePack:
    pack = store.pack(name)
    if pack.language != l1_pack.language or pack.tokenizer.get_vocab() != l1_pack.tokenizer.get_vocab():
        raise IncompatibleArtifactError(
            f"store pack {name!r} was not re-learned from this {l1_pack.language!r} pack (another language or "
            f"vocabulary); delete {store.pack_path(name)} to re-learn it"
        )
    learned_with = pack.provenance.get("objective", "mlm")
    if learned_with != objective:
        raise IncompatibleArtifactError(
            f"store pack {name!r} was re-learned with objective {learned_with!r}, not {objective!r}; delete "
            f"{store.pack_path(name)} to re-learn it, or ask for {learned_with!r}"
        )
    return pack


def relearn_l1_packs(
    store: Store | str,
    l1: LanguagePack | str,
    texts: Sequence[str] | None,
    k: int,
    *,
    body: Body | None = None,
    seed: int = 0,
    max_steps: int = 1000,
    max_minutes: float | None = None,
    lr: float = 1e-3,
    batch_size: int = 32,
    seq_len: int | None = None,
    warmup_steps: int | None = None,
    device: str | None = None,
    progress: bool = True,
    data_description: object = None,
    log: Callable[[str], None] | None = None,
    objective: str = "mlm",
    parallel: Sequence[dict] | None = None,
    align_weight: float | None = None,
    teacher_cache: str | None = None,
) -> list[LanguagePack]:
    """The ``k`` re-learned L1 packs ``{l1}-robust-1`` ... ``{l1}-robust-k`` of ``store``.

    ``l1`` is the L1 pack or its name in the store. A pack already in the store is reused (it must
    share the L1 pack's language and vocabulary); a missing one is learned by step 2 on ``texts``
    (L1 text) with seed ``seed + i``: the L1 pack's tokenizer, a random matrix (special rows from
    the L1 pack), MLM, ``body`` (default: the store's) frozen, for ``max_steps`` or
    ``max_minutes``; an interrupted one resumes. Pass the list to ``finetune(extra_packs=...)``.

    ``objective="mlm+align"`` (or ``"align"``) also pulls each re-learned pack towards the L1 pack's
    pooled states on ``parallel`` pairs ``{"source", "target"}`` of L1 text (e.g. two translations of
    one text): at laptop scale such packs make fine-tuning swap-robust where MLM-only ones do not
    (benchmarks/results/robust_finetune.md, quality_ablation.md).
    """
    store = store if isinstance(store, Store) else Store(store)
    if k < 0:
        raise DataError(f"the number of robust packs is {k}; give 0 or more (e.g. --robust-packs 2)")
    l1_pack = store.pack(l1) if isinstance(l1, str) else l1
    names = [robust_pack_name(l1_pack.language, i) for i in range(1, k + 1)]
    missing = [name for name in names if not store.pack_path(name).exists()]
    texts = [t for t in (texts or []) if t and t.strip()]
    uses_align = "align" in objective
    if missing and uses_align and not parallel:
        raise DataError(
            f"re-learning {', '.join(missing)} with objective {objective!r} needs parallel {l1_pack.language!r} "
            "text (two wordings of the same sentences): pass --robust-parallel FILE or a named source such as bible:4-3"
        )
    if missing and not texts and "mlm" in objective:
        raise DataError(
            f"re-learning {', '.join(missing)} needs {l1_pack.language!r} text; pass --robust-text FILE or a named "
            f"source such as bible:{l1_pack.language}"
        )
    body = body if body is not None else store.body
    say = log or (lambda message: None)
    options = None
    if uses_align:
        options = {"parallel": list(parallel or []), "teacher_cache": teacher_cache, "align_max_length": seq_len}
        if align_weight is not None:
            options["align_weight"] = align_weight
    packs = []
    for index, name in enumerate(names, start=1):
        if name not in missing:
            say(f"robust pack {name}: reusing the pack in the store")
            packs.append(_check_reusable(store, name, l1_pack, objective))
            continue
        say(f"robust pack {name}: re-learning {l1_pack.language!r} on {len(texts):,} lines (seed {seed + index})")
        path = store.pack_path(name)
        outcome = run_transfer(
            body,
            l1_pack.tokenizer,
            texts,
            TransferConfig(
                language=l1_pack.language,
                init="random",
                objective=objective,
                objective_options=options,
                max_steps=max_steps,
                max_minutes=max_minutes,
                lr=lr,
                batch_size=batch_size,
                seq_len=seq_len,
                warmup_steps=warmup_steps,
                seed=seed + index,
                device=device,
                progress=progress,
            ),
            output=path,
            reference_pack=l1_pack,
            resume=True,
            data_description=data_description,
        )
        shutil.rmtree(checkpoint_dir_for(path), ignore_errors=True)  # the pack is complete; it is never resumed
        packs.append(outcome.pack)
    return packs


__all__ = ["relearn_l1_packs", "robust_pack_name", "robust_store"]
