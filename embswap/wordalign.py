"""Token translation counts from word-aligned parallel text, for the ``aligned`` init.

Both sides of every pair are cut into tokens by their own tokenizer (L1 by the reference pack's,
L2 by the new one), the token sequences are word-aligned with eflomal (Östling & Tiedemann 2016,
an optional dependency: ``pip install "embswap[align]"``), and every link of the two alignment
directions, counted once per pair, adds one to ``counts[l2_token][l1_token]``. eflomal samples
with a seed from ``/dev/urandom``, so counts vary slightly between runs on the same text; they are
cached on disk (``$EMBSWAP_CACHE/alignments``, by text and tokenizers), so a resumed run or a
re-run starts from the same rows without aligning again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .errors import DataError, EmbswapError
from .io import atomic_folder, load_json

# Part of the cache key: a change to how links are made or counted must not reuse old counts.
METHOD = "eflomal n_samplers=1, union of both directions, unk dropped"
COUNTS_FILE = "counts.json"

Links = list[tuple[int, int]]  # (source position, target position) pairs of one sentence pair


def _aligner():
    try:
        from eflomal import Aligner
    except ImportError:
        raise EmbswapError(
            'init "aligned" word-aligns the parallel text with eflomal; pip install "embswap[align]"'
        ) from None
    # One sampler: on German/Russian Bible text three samplers took 4x the time for the same init
    # quality (untrained-pack retrieval within a point); the union of both directions likewise
    # matched the intersection or either direction alone.
    return Aligner(n_samplers=1)


def _parse_links(line: str) -> Links:
    return [(int(i), int(j)) for i, _, j in (item.partition("-") for item in line.split())]


def align_positions(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[Links]:
    """eflomal links of token-id sequences, both directions joined: one set of (i, j) per pair."""
    if len(sources) != len(targets):
        raise DataError(
            f"word alignment needs as many source as target sentences; got {len(sources)} and {len(targets)}"
        )
    aligner = _aligner()
    with tempfile.TemporaryDirectory(prefix="embswap-eflomal-") as tmp:
        forward, reverse = Path(tmp) / "forward", Path(tmp) / "reverse"
        # Token ids as words: eflomal splits on whitespace and lowercases, ids survive both.
        aligner.align(
            [" ".join(map(str, ids)) for ids in sources],
            [" ".join(map(str, ids)) for ids in targets],
            links_filename_fwd=str(forward),
            links_filename_rev=str(reverse),
            quiet=True,
        )
        fwd_lines = forward.read_text(encoding="utf-8").splitlines()
        rev_lines = reverse.read_text(encoding="utf-8").splitlines()
    if len(fwd_lines) != len(sources) or len(rev_lines) != len(sources):
        raise EmbswapError(f"eflomal returned {len(fwd_lines)} alignments for {len(sources)} sentence pairs")
    return [sorted(set(_parse_links(f)) | set(_parse_links(r))) for f, r in zip(fwd_lines, rev_lines)]


def count_links(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    links: Sequence[Links],
    ignore_source: frozenset[int] = frozenset(),
) -> dict[int, Counter]:
    """``{target token id: Counter({source token id: links})}`` from per-pair position links."""
    counts: dict[int, Counter] = {}
    for source, target, pair_links in zip(sources, targets, links):
        for i, j in pair_links:
            if source[i] not in ignore_source:
                counts.setdefault(target[j], Counter())[source[i]] += 1
    return counts


def default_cache_dir() -> Path:
    return Path(os.environ.get("EMBSWAP_CACHE", Path.home() / ".cache" / "embswap")) / "alignments"


def _tokenizer_identity(tokenizer) -> str:
    """What decides how text becomes ids: the backend's JSON without its padding/truncation state."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    return json.dumps({k: v for k, v in state.items() if k not in ("padding", "truncation")}, sort_keys=True)


def cache_key(pairs: Sequence[dict], source_tokenizer, target_tokenizer) -> str:
    digest = hashlib.sha256(METHOD.encode() + b"\0")
    for tokenizer in (source_tokenizer, target_tokenizer):
        digest.update(_tokenizer_identity(tokenizer).encode() + b"\0")
    for pair in pairs:
        digest.update(pair["source"].encode() + b"\0" + pair["target"].encode() + b"\0")
    return digest.hexdigest()


def token_translation_counts(
    pairs: Sequence[dict], source_tokenizer, target_tokenizer, *, cache_dir: str | os.PathLike | None = None
) -> dict[int, Counter]:
    """How often each L2 token (``target_tokenizer``) aligns to each L1 token (``source_tokenizer``).

    ``pairs`` are ``{"source": L1 text, "target": L2 text}``. Pairs where a side has no token are
    skipped; L1 [UNK] links are dropped (they carry no meaning to copy). Results are cached in
    ``cache_dir`` (default :func:`default_cache_dir`).
    """
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / cache_key(
        pairs, source_tokenizer, target_tokenizer
    )
    if (folder / COUNTS_FILE).is_file():
        stored = load_json(folder / COUNTS_FILE)
        return {int(t): Counter({int(s): n for s, n in links.items()}) for t, links in stored.items()}
    counts = _align_and_count(pairs, source_tokenizer, target_tokenizer)
    with atomic_folder(folder) as tmp:
        (tmp / COUNTS_FILE).write_text(json.dumps({t: dict(links) for t, links in counts.items()}), encoding="utf-8")
    return counts


def _align_and_count(pairs: Sequence[dict], source_tokenizer, target_tokenizer) -> dict[int, Counter]:
    def ids(tokenizer, texts):
        return tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    sources = ids(source_tokenizer, (p["source"] for p in pairs))
    targets = ids(target_tokenizer, (p["target"] for p in pairs))
    kept = [k for k, (s, t) in enumerate(zip(sources, targets)) if s and t]
    if not kept:
        raise DataError("init 'aligned' found no parallel pair with text on both sides; pass --parallel FILE")
    sources, targets = [sources[k] for k in kept], [targets[k] for k in kept]
    unk = source_tokenizer.unk_token_id
    return count_links(
        sources,
        targets,
        align_positions(sources, targets),
        ignore_source=frozenset() if unk is None else frozenset({unk}),
    )
