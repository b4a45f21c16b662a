"""The alignment objective: pull the frozen body's pooled states on L2 text onto its states on L1.

Teacher = the frozen body read through the L1 pack on the L1 side of parallel text (no gradient,
computed once and cached on disk); student = the same frozen body read through the new pack on
the L2 side. Loss = MSE between L2-normalised pooled vectors: un-normalised, the gradient goes
into the vectors' length and retrieval barely moves (docs/method.md#alignment).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..compose import build_empty_model, composed_state_dict
from ..data.parallel import read_parallel, read_parallel_source, validate_pairs  # noqa: F401  (their old home)
from ..errors import CorruptArtifactError, DataError
from ..io import load_tensors, save_tensors, tensor_bytes
from ..pooling import POOLING_MODES, pool, pooled_states  # noqa: F401  (their old home)
from .objectives import LossTerm, ObjectiveContext, register_objective


def teacher_key(body_fingerprint: str, pack, mode: str, max_length: int) -> str:
    """Cache folder of one teacher: changes when the body, the L1 pack, pooling or length change."""
    digest = hashlib.sha256()
    digest.update(json.dumps([body_fingerprint, mode, max_length]).encode())
    digest.update(tensor_bytes(pack.word_embeddings))
    # The vocabulary, not the tokenizer JSON: that JSON also records padding/truncation state.
    digest.update(json.dumps(sorted(pack.tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("EMBSWAP_CACHE", Path.home() / ".cache" / "embswap")) / "teacher"


def _text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _cached_rows(folder: Path, wanted: set[bytes]) -> dict[bytes, torch.Tensor]:
    """The vectors of ``wanted`` sentences found in the folder's shards (an unreadable shard is skipped:
    its sentences are computed again)."""
    found: dict[bytes, torch.Tensor] = {}
    if not folder.is_dir():
        return found
    for shard in sorted(folder.glob("[!.]*.safetensors")):
        try:  # a damaged shard costs a recomputation, never a failed run
            tensors = load_tensors(shard, expected_shapes={"vectors": (None, None), "digests": (None, 32)})
        except CorruptArtifactError:
            continue
        if tensors["digests"].shape[0] != tensors["vectors"].shape[0]:
            continue
        for digest, vector in zip(tensors["digests"].numpy(), tensors["vectors"]):
            key = digest.tobytes()
            if key in wanted:
                found[key] = vector
    return found


def _write_shard(folder: Path, digests: list[bytes], vectors: torch.Tensor) -> None:
    """One new shard, written to a hidden temporary file and renamed: readers never see half a shard."""
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(b"".join(digests)).hexdigest()[:32]
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    table = torch.frombuffer(bytearray(b"".join(digests)), dtype=torch.uint8).reshape(len(digests), 32)
    try:
        save_tensors({"vectors": vectors, "digests": table}, tmp)
        os.replace(tmp, folder / f"{name}.safetensors")
    finally:
        tmp.unlink(missing_ok=True)


@torch.no_grad()
def _encode(model, pack, texts: Sequence[str], mode: str, max_length: int, batch_size: int, progress) -> torch.Tensor:
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-grouped: less padding
    out = torch.empty(0)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = pack.tokenizer(
            [texts[i] for i in index], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        device = next(model.parameters()).device
        vectors = F.normalize(
            pooled_states(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), mode).float(),
            dim=-1,
        ).cpu()
        if out.numel() == 0:
            out = torch.empty(len(texts), vectors.shape[1])
        out[index] = vectors
        if progress is not None:
            progress(len(index))
    model.train(was_training)
    return out


def teacher_vectors(
    model,
    pack,
    body_fingerprint: str,
    sources: Sequence[str],
    *,
    mode: str = "mean",
    max_length: int = 128,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress=None,
) -> torch.Tensor:
    """L2-normalised pooled states of ``model`` (body + L1 pack) on ``sources``, cached on disk.

    The cache keeps one vector per sentence (shards in a folder per body, pack, pooling and length),
    so parallel data that shares most of its L1 side with an earlier run (another L2 of the same
    text) only computes the sentences it adds.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / teacher_key(body_fingerprint, pack, mode, max_length)
    digests = [_text_digest(text) for text in sources]
    known = _cached_rows(folder, set(digests))
    todo: dict[bytes, str] = {}
    for digest, text in zip(digests, sources):
        if digest not in known:
            todo.setdefault(digest, text)
    if progress is not None and len(sources) > len(todo):
        progress(len(sources) - len(todo))
    if todo:
        vectors = _encode(model, pack, list(todo.values()), mode, max_length, batch_size, progress)
        _write_shard(folder, list(todo), vectors)
        known.update(zip(todo, vectors))
    if not sources:
        return torch.empty(0)
    return torch.stack([known[digest] for digest in digests])


@dataclass
class AlignmentLoss:
    """weight * MSE(normalise(student pooled L2 states), cached teacher vectors)."""

    teacher: torch.Tensor  # [pairs, hidden], L2-normalised
    weight: float = 1.0
    mode: str = "mean"

    def __call__(self, model, input_ids, attention_mask, index: torch.Tensor) -> tuple[torch.Tensor, dict]:
        student = F.normalize(pooled_states(model, input_ids, attention_mask, self.mode).float(), dim=-1)
        target = self.teacher[index.cpu()].to(student.device)
        mse = F.mse_loss(student, target)
        cosine = (student * target).sum(-1).mean()
        return self.weight * mse, {"align_mse": mse.item(), "cosine": cosine.item()}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches by length, so batches have little padding."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


class ParallelBatches:
    """Length-grouped batches of the L2 side of parallel pairs, from (seed, step) alone.

    Each batch carries ``index`` (rows of the teacher table) so the loss finds its targets.
    """

    def __init__(self, tokenizer, targets: Sequence[str], *, batch_size: int, seed: int, max_length: int = 128):
        from .loop import derive_seed

        self._derive_seed = derive_seed
        encoded = tokenizer(list(targets), truncation=True, max_length=max_length)["input_ids"]
        self.ids = [torch.tensor(row, dtype=torch.long) for row in encoded]
        self.pad_id = tokenizer.pad_token_id
        self.batch_size = min(batch_size, len(self.ids))
        self.seed = seed
        self._plans: dict[int, list[list[int]]] = {}

    @property
    def batches_per_epoch(self) -> int:
        return max(1, len(self.ids) // self.batch_size)

    def _plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._plans:
            generator = torch.Generator().manual_seed(self._derive_seed(self.seed, "align", "epoch", epoch))
            batches = length_grouped_batches([len(t) for t in self.ids], self.batch_size, generator)
            self._plans = {epoch: [b for b in batches if len(b) == self.batch_size] or batches}
        return self._plans[epoch]

    def rows_read(self, steps: int) -> list[int]:
        """Sorted rows that steps ``0 .. steps - 1`` read (on every process together)."""
        rows: set[int] = set()
        for step in range(steps):
            if len(rows) == len(self.ids):
                break
            rows.update(self._batch(step))
        return sorted(rows)

    def _batch(self, step: int) -> list[int]:
        """Rows of step ``step``'s whole batch (all processes): the one schedule rows_read and __call__ share."""
        epoch, index = divmod(step, self.batches_per_epoch)
        plan = self._plan(epoch)
        return plan[index % len(plan)]

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict:
        rows = self._batch(step)[process_index::num_processes]
        width = max(len(self.ids[i]) for i in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, : len(self.ids[i])] = self.ids[i]
            attention_mask[r, : len(self.ids[i])] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "index": torch.tensor(rows)}


# The measured default: the normalised MSE starts near 2e-3 on a 256-wide body, so 5000 puts it on
# the MLM loss's scale (docs/method.md#alignment). Alone, Adam makes the scale irrelevant.
DEFAULT_ALIGN_WEIGHT = 5000.0


@contextlib.contextmanager
def _teacher_progress(total: int, enabled: bool):
    """A rich progress bar on stderr while the teacher vectors are computed (skipped when cached)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("teacher vectors"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("teacher", total=total)
        yield lambda n: bar.advance(task, n)


def _align_terms(context: ObjectiveContext) -> list[LossTerm]:
    """Builder of the ``align`` objective for :func:`embswap.train.objectives.register_objective`."""
    options = context.options
    pairs = options.get("parallel")
    if not pairs:
        raise DataError(
            "the align objective needs parallel text: pass --parallel FILE (JSONL source/target, TSV) "
            "or a named source such as bible:4-e"
        )
    pairs = validate_pairs(pairs, options.get("parallel_description", "parallel data"))
    reference = context.reference_pack
    if reference is None:
        raise DataError("the align objective reads the source side with the L1 pack: pass --reference-pack")
    mode = options.get("pooling", "mean")
    max_length = int(options.get("align_max_length") or context.seq_len)  # None: the run's (body-fitted) length
    batches = ParallelBatches(
        context.tokenizer,
        [p["target"] for p in pairs],
        batch_size=int(options.get("align_batch_size", context.batch_size)),
        seed=context.seed,
        max_length=max_length,
    )
    # Only the pairs the run's steps will read need a teacher vector: 150 steps of 32 read 4,800 of the
    # demo's 20,000 verses. The batches are a function of (seed, step), so the set is known up front.
    used = batches.rows_read(context.max_steps) if context.max_steps else list(range(len(pairs)))
    teacher_model = build_empty_model(context.body, reference.vocab_size)
    teacher_model.load_state_dict(composed_state_dict(teacher_model, context.body, reference, None), strict=True)
    # Several L2 translations often share one L1 sentence: encode each distinct source once.
    sources = sorted({pairs[i]["source"] for i in used})
    row_of = {text: i for i, text in enumerate(sources)}
    with _teacher_progress(len(sources), context.progress) as advance:
        unique = teacher_vectors(
            teacher_model,
            reference,
            context.body.fingerprint,
            sources,
            mode=mode,
            max_length=max_length,
            cache_dir=options.get("teacher_cache"),
            progress=advance,
        )
    del teacher_model
    teacher = torch.zeros(len(pairs), unique.shape[1])  # rows no step reads stay zero
    teacher[torch.tensor(used)] = unique[torch.tensor([row_of[pairs[i]["source"]] for i in used])]
    loss = AlignmentLoss(teacher, weight=1.0, mode=mode)

    def align_loss(model, batch) -> torch.Tensor:
        value, _ = loss(model, batch["input_ids"], batch["attention_mask"], batch["index"])
        return value

    weight = float(options.get("align_weight", DEFAULT_ALIGN_WEIGHT))
    return [LossTerm("align", align_loss, weight=weight, batches=batches)]


register_objective("align", _align_terms)
