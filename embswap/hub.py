"""Artifacts on the Hugging Face Hub: resolving ``user/repo[@revision][:subfolder]``, pull, push, search.

Downloads go through huggingface_hub's own cache and resolution (so ``HF_HUB_OFFLINE=1`` and a
pre-filled cache work); only safetensors, JSON, tokenizer files and model cards are fetched, never
code and never pickles. A push is one commit built from an artifact folder (or a whole store) plus
a generated model card; files a previous push left in the same artifact folder are deleted in it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .constants import CONFIG_NAME, EVAL_RESULTS, MODEL_CARD, STORE_BODY, TOKENIZER_DIR
from .errors import ArtifactNotFoundError, CorruptArtifactError, EmbswapError, OutputPathError
from .io import atomic_folder, read_config
from .layout import artifact_folders
from .outputs import ARTIFACT_KINDS, EMPTY, LABELS, MISSING, STORE, check_output, kind_of
from .tags import KIND_TAGS, LIBRARY_TAG, fingerprint_tag, hub_location, parse_hub_spec

_ALLOWED_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]
_FINGERPRINT = re.compile(r"^[0-9a-f]{12,64}$")


def is_allowed_file(path_in_repo: str) -> bool:
    """Whether a download may fetch this file: weights, JSON, tokenizer files, model cards; no code, no pickles."""
    name = path_in_repo.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _ALLOWED_FILES)


def _split_location(location: str | os.PathLike, revision: str | None) -> tuple[str, str | None, str | None]:
    text = str(location)
    spec = parse_hub_spec(text) if not text.startswith((".", "/", "~")) else None
    if spec is None:
        raise ArtifactNotFoundError(
            f"{location} does not exist; pass an artifact folder or a Hub id user/repo[@revision][:subfolder]"
        )
    repo, spec_revision, subfolder = spec
    if revision and spec_revision and revision != spec_revision:
        raise EmbswapError(
            f"{location} names revision {spec_revision!r} but revision {revision!r} was also given; give one"
        )
    return repo, revision or spec_revision, subfolder.strip("/") if subfolder else None


def _snapshot(repo: str, revision: str | None, subfolder: str | None, location: str) -> Path:
    """The Hub snapshot folder of ``repo`` at ``revision`` holding (at least) ``subfolder``'s allowed files."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = [f"{subfolder}/{p}" if subfolder else p for p in _ALLOWED_FILES]
    patterns += [f"{subfolder}/**/{p}" if subfolder else f"**/{p}" for p in _ALLOWED_FILES]
    try:
        root = snapshot_download(repo, revision=revision, allow_patterns=patterns)
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArtifactNotFoundError(
            f"cannot fetch {location} from the Hub ({first}); check the id, your network or HF_HUB_OFFLINE"
        ) from None
    return Path(root)


def resolve(location: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder for ``location``: the path itself, or a Hub snapshot of the repo/subfolder."""
    path = Path(location)
    if path.exists():
        return path
    repo, revision, subfolder = _split_location(location, revision)
    root = _snapshot(repo, revision, subfolder, str(location))
    folder = root / subfolder if subfolder else root
    if not folder.exists():
        raise ArtifactNotFoundError(f"{repo} has no folder {subfolder!r}; list the repo's files to find the artifact")
    return folder


def pull(location: str, output: str | os.PathLike, revision: str | None = None, *, overwrite: bool = False) -> Path:
    """Download an artifact or a store (``user/repo[@revision][:subfolder]``) into the folder ``output``.

    Only weights, JSON, tokenizer files and model cards are copied; every artifact in the result is
    checked against the SHA-256 hashes its config records. ``output`` may be missing or empty, or
    (with ``overwrite``) an artifact or store of the kind pulled; never other files.
    """
    output = Path(output)
    found = kind_of(output)
    if found in (*ARTIFACT_KINDS, STORE):
        if not overwrite:
            label = LABELS[found]
            raise OutputPathError(
                f"{output} already holds {'an' if label[0] in 'aeiou' else 'a'} {label}; pass --overwrite "
                "(overwrite=True) to replace it with the download, or choose another folder"
            )
        check_output(output, found)
    elif found not in (MISSING, EMPTY):
        raise OutputPathError(
            f"{output} is a {LABELS[found]}, not an embswap artifact or store; embswap will not replace it: "
            "choose another folder"
        )
    else:
        check_output(output, STORE)  # no link, not inside an artifact
    repo, revision, subfolder = _split_location(location, revision)
    root = _snapshot(repo, revision, subfolder, location)
    source = root / subfolder if subfolder else root
    files = [p for p in sorted(source.rglob("*")) if p.is_file() and is_allowed_file(p.name)]
    if not files:
        raise ArtifactNotFoundError(f"{location} holds no artifact files; check the repo, revision and subfolder")
    with atomic_folder(output) as tmp:
        for path in files:
            target = tmp / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # follows the cache's blob symlinks
        for folder in artifact_folders(tmp):
            read_config(folder, _peek_kind(folder), verify=True)
    return output


def _peek_kind(folder: Path) -> str:
    try:
        kind = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind not in KIND_TAGS or kind == "store":
        raise CorruptArtifactError(f"{folder / CONFIG_NAME} is not an embswap artifact config (kind {kind!r})")
    return kind


def read_remote_config(location: str | os.PathLike, revision: str | None = None) -> dict:
    """An artifact's config.json (or a store's body config) without downloading any weights."""
    path = Path(location)
    if path.exists():
        for candidate in (path / CONFIG_NAME, path / STORE_BODY / CONFIG_NAME):
            if candidate.is_file():
                return json.loads(candidate.read_text(encoding="utf-8"))
        raise ArtifactNotFoundError(
            f"{path} has no {CONFIG_NAME} (nor {STORE_BODY}/{CONFIG_NAME}); pass a body, pack or store"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo, revision, subfolder = _split_location(location, revision)
    prefix = f"{subfolder}/" if subfolder else ""
    reason = f"it has no {CONFIG_NAME} (nor {STORE_BODY}/{CONFIG_NAME}); pass a body, pack or store"
    for name in (f"{prefix}{CONFIG_NAME}", f"{prefix}{STORE_BODY}/{CONFIG_NAME}"):
        try:
            return json.loads(Path(hf_hub_download(repo, name, revision=revision)).read_text(encoding="utf-8"))
        except LocalEntryNotFoundError:  # offline and not cached (a subclass of EntryNotFoundError: test it first)
            reason = (
                "not in the local Hub cache and the Hub cannot be reached; check the id, your network or HF_HUB_OFFLINE"
            )
        except EntryNotFoundError:
            continue
        except (HfHubHTTPError, OSError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ArtifactNotFoundError(
                f"cannot read {location} from the Hub ({first}); check the id and your network"
            ) from None
    raise ArtifactNotFoundError(f"cannot read {location}: {reason}")


# --- push ------------------------------------------------------------------------------------------


@dataclass
class _Upload:
    """What one commit writes: repo path -> local file or bytes, and the artifact folders it replaces."""

    files: dict[str, Path | bytes] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)  # repo prefixes ("" or "packs/de/") of artifacts


def _join(prefix: str, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def _add_artifact(upload: _Upload, folder: Path, prefix: str, card_text: str | None) -> dict:
    """Queue an artifact folder's config, listed files and card; returns its (verified) config."""
    config = read_config(folder, _peek_kind(folder), verify=True)
    names = [CONFIG_NAME, *sorted(config["files"])]
    blocked = [n for n in names if not is_allowed_file(n)]
    if blocked:
        raise EmbswapError(
            f"{folder} holds {blocked[0]}, which embswap never downloads (only JSON, safetensors, tokenizer files); "
            "save the artifact again with embswap"
        )
    for name in names:
        upload.files[_join(prefix, name)] = folder / name
    if card_text is not None:
        upload.files[_join(prefix, MODEL_CARD)] = card_text.encode("utf-8")
    elif (folder / MODEL_CARD).is_file():
        upload.files[_join(prefix, MODEL_CARD)] = folder / MODEL_CARD
    upload.replaced.append(f"{prefix.strip('/')}/" if prefix.strip("/") else "")
    return config


def _is_artifact_file(relative: str) -> bool:
    """Files that belong to the artifact at a folder itself (not to artifacts nested below it)."""
    return "/" not in relative or relative.startswith(f"{TOKENIZER_DIR}/")


def stale_files(remote: Iterable[str], upload: _Upload) -> list[str]:
    """Remote files of the replaced artifacts that the new upload does not write again."""
    stale = []
    for path in remote:
        if path in upload.files or path.endswith(".gitattributes"):
            continue
        for prefix in upload.replaced:
            if path.startswith(prefix) and _is_artifact_file(path[len(prefix) :]):
                stale.append(path)
                break
    return sorted(stale)


def _hub_error(err: Exception, repo_id: str) -> EmbswapError:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return EmbswapError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it to upload")
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return EmbswapError(
        f"pushing to {repo_id} failed ({first}); check the repo id, your token (`hf auth login`, --token or HF_TOKEN) and network"
    )


def _commit(upload: _Upload, repo_id: str, *, private: bool, revision: str | None, token: str | None, message: str):
    """Create the repo (and branch) if needed, then write ``upload`` as one commit; returns its CommitInfo."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        repo_id = getattr(url, "repo_id", None) or repo_id
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        remote = api.list_repo_files(repo_id, revision=revision, repo_type="model")
        operations = [CommitOperationDelete(path_in_repo=p) for p in stale_files(remote, upload)]
        for path_in_repo, source in sorted(upload.files.items()):
            data = source if isinstance(source, bytes) else str(source)
            operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=data))
        return api.create_commit(repo_id, operations, commit_message=message, revision=revision, repo_type="model")
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise _hub_error(err, repo_id) from None


# A push's destination: (repo id, revision, subfolder).
_Target = tuple[str, str | None, str | None]


def _target(repo_id: str, revision: str | None, subfolder: str | None) -> _Target:
    """``--repo`` may itself be ``user/repo@branch:sub``; explicit revision / subfolder must agree with it."""
    spec = parse_hub_spec(repo_id)
    if spec is None and "/" in repo_id:
        raise EmbswapError(f"{repo_id!r} is not a Hub repo id; expected user/name (optionally @branch and :subfolder)")
    if spec is None:
        return repo_id, revision, subfolder.strip("/") if subfolder else None
    repo, spec_revision, spec_sub = spec
    for given, found, what in ((revision, spec_revision, "revision"), (subfolder, spec_sub, "subfolder")):
        if given and found and given.strip("/") != found.strip("/"):
            raise EmbswapError(f"{repo_id} names {what} {found!r} but {what} {given!r} was also given; give one")
    sub = subfolder or spec_sub
    return repo, revision or spec_revision, sub.strip("/") if sub else None


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    subfolder: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    card: bool = True,
    **card_options,
):
    """Push an artifact folder, or a whole store, to ``repo_id`` as one commit with a model card.

    ``card_options`` go to ``embswap.cards`` (``license``, ``base_model``, ``datasets``,
    ``eval_results``, ``body_location``). An existing ``README.md`` in the folder is uploaded as is
    when ``card`` is False. Returns huggingface_hub's ``CommitInfo``.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactNotFoundError(f"{folder} does not exist; pass an artifact folder or a store")
    is_store = not (folder / CONFIG_NAME).is_file()
    if is_store and not artifact_folders(folder):
        raise EmbswapError(
            f"{folder} is neither an embswap artifact (no {CONFIG_NAME}) nor a store (no body/, packs/ or tasks/)"
        )
    target = _target(repo_id, revision, subfolder)
    queue = _queue_store if is_store else _queue_artifact
    upload, message = queue(folder, target, card, card_options, commit_message)
    repo, revision, _ = target
    return _commit(upload, repo, private=private, revision=revision, token=token, message=message)


def push_artifact(artifact, repo_id: str, **options):
    """Save ``artifact`` (Body, LanguagePack or TaskModule) to a temporary folder and push that."""
    with tempfile.TemporaryDirectory(prefix="embswap-push-") as tmp:
        folder = artifact.save_pretrained(Path(tmp) / "artifact")
        return push_folder(folder, repo_id, **options)


def push_store(store_path: str | os.PathLike, repo_id: str, **options):
    """Push a store (``body/``, ``packs/<lang>/``, ``tasks/<name>/``) as one commit; ``options`` as ``push_folder``'s.

    Every artifact gets its own card and the store root a card listing them all; packs already in
    the repo that this store does not hold are left in place, so many packs can share one repo.
    """
    root = Path(store_path)
    if not (root.is_dir() and not (root / CONFIG_NAME).is_file() and artifact_folders(root)):
        raise ArtifactNotFoundError(
            f"{root} is not a store (no body/, packs/ or tasks/ with artifacts); create one with `embswap split`"
        )
    return push_folder(root, repo_id, **options)


def _queue_artifact(folder: Path, target: _Target, card: bool, card_options: dict, message: str | None):
    """The upload of one artifact folder (with its card), and ``message`` or one that names the artifact."""
    from . import cards

    repo, revision, subfolder = target
    location = hub_location(repo, revision, subfolder)
    text = cards.artifact_card(folder, location=location, **card_options).content if card else None
    upload = _Upload()
    config = _add_artifact(upload, folder, subfolder or "", text)
    return upload, message or f"embswap: upload {cards.describe(config)}"


def _queue_store(root: Path, target: _Target, card: bool, card_options: dict, message: str | None):
    """The upload of a store (every artifact with its card, its results, its root card), and ``message`` or a default."""
    from . import cards

    repo, revision, subfolder = target
    folders = artifact_folders(root)
    base = subfolder or ""
    upload = _Upload()
    body_location = hub_location(repo, revision, _join(base, STORE_BODY)) if (root / STORE_BODY).exists() else None
    eval_file = root / EVAL_RESULTS
    results = card_options.pop("eval_results", None) or (
        json.loads(eval_file.read_text(encoding="utf-8")) if eval_file.is_file() else None
    )
    for folder in folders:
        relative = folder.relative_to(root).as_posix()
        location = hub_location(repo, revision, _join(base, relative))
        options = {**card_options, "body_location": card_options.get("body_location") or body_location}
        text = cards.artifact_card(folder, location=location, eval_results=results, **options).content if card else None
        _add_artifact(upload, folder, _join(base, relative), text)
    if eval_file.is_file():
        upload.files[_join(base, EVAL_RESULTS)] = eval_file
    if card:
        text = cards.store_card(
            root, location=hub_location(repo, revision, subfolder), eval_results=results, **card_options
        ).content
        upload.files[_join(base, MODEL_CARD)] = text.encode("utf-8")
    return upload, message or f"embswap: upload store ({len(folders)} artifacts)"


# --- search ----------------------------------------------------------------------------------------


def body_fingerprint(body: str) -> str:
    """A body's fingerprint from a fingerprint (12+ hex digits), or a body, pack, task or store location."""
    if _FINGERPRINT.match(body.lower()) and not Path(body).exists():
        return body.lower()
    config = read_remote_config(body)
    fingerprint = config.get("fingerprint") if config.get("kind") == "body" else config.get("body_fingerprint")
    if not isinstance(fingerprint, str):
        raise CorruptArtifactError(
            f"{body}: its {CONFIG_NAME} records no body fingerprint; pass a body, pack, task or store"
        )
    return fingerprint


def search(body: str, language: str | None = None, *, token: str | None = None, limit: int = 100) -> list[dict]:
    """Repos on the Hub that publish artifacts for ``body`` (by the card tag ``body-<fingerprint12>``)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    tag = fingerprint_tag(body_fingerprint(body))
    try:
        models = list(
            HfApi(token=token).list_models(filter=[LIBRARY_TAG, tag], language=language, cardData=True, limit=limit)
        )
    except OfflineModeIsEnabled:
        raise EmbswapError("cannot search the Hub: HF_HUB_OFFLINE is set; unset it to search") from None
    except (HfHubHTTPError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EmbswapError(f"searching the Hub failed ({first}); check your network") from None
    rows = []
    kinds = {v: k for k, v in KIND_TAGS.items()}
    for info in models:
        tags = list(info.tags or [])
        data = getattr(info, "card_data", None)
        languages = (data.get("language") if data is not None else None) or []
        languages = [languages] if isinstance(languages, str) else list(languages)
        if tag not in tags or (language and language not in languages and language not in tags):
            continue  # the Hub filters already; this guards against looser server-side matching
        rows.append(
            {
                "repo": info.id,
                "kinds": [kinds[t] for t in tags if t in kinds],
                "languages": languages,
                "body": tag[len("body-") :],
                "last_modified": info.last_modified.isoformat() if getattr(info, "last_modified", None) else None,
                "downloads": getattr(info, "downloads", None),
            }
        )
    return rows
