"""Model cards (``README.md`` with YAML metadata) for bodies, language packs, task modules and stores.

Everything a card says comes from the artifacts' configs (kind, fingerprints, provenance) and from
evaluation results when a store or the caller has them. The metadata carries the tags
``embswap search`` looks for: ``embswap``, the artifact kind and ``body-<first 12 hex digits>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .constants import CONFIG_NAME, EVAL_RESULTS, MODEL_CARD, PACK_WEIGHTS, STORE_BODY
from .errors import ArtifactNotFoundError
from .io import read_config
from .layout import artifact_folders
from .tags import KIND_TAGS, LIBRARY_TAG, fingerprint_tag, parse_hub_spec

_KIND_NAMES = {"body": "body", "language_pack": "language pack", "task_module": "task module"}
_MAX_VALUE_CHARS = 160  # long provenance values (lists of packs, digests) are cut in the card text


def load_artifact_config(folder: str | os.PathLike) -> dict:
    """An artifact folder's validated config.json, whatever its kind."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ArtifactNotFoundError(f"{folder} has no {CONFIG_NAME}; pass an embswap artifact folder")
    kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    return read_config(folder, kind if isinstance(kind, str) else "?")


def body_fingerprint_of(config: dict) -> str:
    return config["fingerprint"] if config["kind"] == "body" else config["body_fingerprint"]


def describe(config: dict) -> str:
    """A short name for commit messages: ``language pack 'de' (body 0123456789ab)``."""
    kind = config["kind"]
    detail = {"language_pack": f" {config.get('language')!r}", "task_module": f" {config.get('task')!r}"}.get(kind, "")
    return f"{_KIND_NAMES.get(kind, kind)}{detail} (body {body_fingerprint_of(config)[:12]})"


def _repo_of(location: str | None) -> str | None:
    spec = parse_hub_spec(location) if location and not str(location).startswith((".", "/", "~")) else None
    return spec[0] if spec and not Path(str(location)).exists() else None


def _languages(config: dict) -> list[str]:
    if config["kind"] == "language_pack":
        return [config["language"]]
    if config["kind"] == "task_module":
        language = config.get("provenance", {}).get("pack_language")
        return [language] if isinstance(language, str) else []
    return []


def card_data(
    kind: str,
    fingerprint: str,
    *,
    languages=(),
    location: str | None = None,
    license: str | None = None,
    base_model: str | None = None,
    body_location: str | None = None,
    datasets=None,
    extra_tags=(),
) -> ModelCardData:
    """The YAML metadata: library, languages, license, tags (kind and body fingerprint), base model, datasets."""
    own_repo = _repo_of(location)
    if base_model is None:
        body_repo = _repo_of(body_location)
        base_model = body_repo if body_repo and body_repo != own_repo else None
    tags = [LIBRARY_TAG, KIND_TAGS[kind], fingerprint_tag(fingerprint), *extra_tags]
    return ModelCardData(
        library_name=LIBRARY_TAG,
        language=sorted(set(languages)) or None,
        license=license,
        tags=list(dict.fromkeys(tags)),
        base_model=base_model,
        datasets=list(datasets) if datasets else None,
    )


def _value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _table(rows: list[tuple[str, object]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_value(value)} |" for key, value in rows if value not in (None, {}, [])]
    return "\n".join(lines)


def _metric_rows(results, path=()) -> list[tuple[str, dict]]:
    """Flatten nested results (``{task: {lang: {metric: number}}}`` or shallower) into labelled rows."""
    if not isinstance(results, dict):
        return []
    numbers = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    rows = [(" / ".join(path) or "all", numbers)] if numbers else []
    for key, value in results.items():
        if isinstance(value, dict):
            rows += _metric_rows(value, (*path, str(key)))
    return rows


def _results_section(results, title: str = "Evaluation") -> str:
    rows = _metric_rows(results)
    if not rows:
        return ""
    metrics = list(dict.fromkeys(m for _, numbers in rows for m in numbers))
    lines = [f"## {title}", "", "| | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for label, numbers in rows:
        cells = [f"{numbers[m]:.2f}" if isinstance(numbers.get(m), float) else str(numbers.get(m, "")) for m in metrics]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _provenance_section(provenance: dict) -> str:
    rows = [(key, value) for key, value in sorted(provenance.items()) if key != "embswap_version"]  # shown in Details
    rows = [(key, value) for key, value in rows if value not in (None, {}, [])]
    return "## How it was made\n\n" + _table(rows) + "\n" if rows else ""


def _usage(kind: str, location: str, body_location: str | None, fingerprint: str) -> str:
    body = body_location or "BODY"  # placeholders in capitals: safe to paste into a shell, easy to spot
    pack, task = ("PACK", location) if kind == "task_module" else (location, None)
    if kind == "body":
        body, pack = location, "PACK"
    args = f'"{body}", "{pack}"' + (f', "{task}"' if task else "")
    cli = f"embswap compose --body {body} --pack {pack}" + (f" --task {task}" if task else "") + " -o model"
    lines = [
        "## Use it",
        "",
        "Compose a body, a language pack and (optionally) a task module into an ordinary `transformers` model:",
        "",
        "```python",
        "import embswap",
        f"model, tokenizer = embswap.compose({args})",
        "```",
        "",
        "or write a standard Hugging Face model folder that plain `transformers` and `pipeline()` load:",
        "",
        "```bash",
        cli,
        "```",
        "",
    ]
    if body_location is None and kind != "body":
        lines += [
            f"BODY is the body with fingerprint `{fingerprint}`; find where it is published with "
            f"`embswap search --body {fingerprint[:12]}`.",
            "",
        ]
    if kind == "body":
        lines += [f"List the language packs published for this body: `embswap search --body {fingerprint[:12]}`.", ""]
    return "\n".join(lines)


def _intro(config: dict) -> tuple[str, str]:
    kind, fingerprint = config["kind"], body_fingerprint_of(config)
    if kind == "language_pack":
        parts = ["tokenizer", "word-embedding matrix"]
        parts += ["MLM output bias"] if config.get("has_output_bias") else []
        parts += ["position embeddings (+pos)"] if config.get("position_embeddings") else []
        parts += ["language adapter (+adapters)"] if config.get("adapter_config") else []
        title = f"Language pack `{config['language']}` for the embswap body `{fingerprint[:12]}`"
        listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
        text = (
            f"An embswap language pack: the {listed} that let the "
            f"frozen body `{fingerprint[:12]}` read **{config['language']}** (MonoTrans, Artetxe et al. 2020). "
            "It is not a complete model: compose it with its body, and with a task module fine-tuned in any "
            "language for zero-shot transfer."
        )
        return title, text
    if kind == "task_module":
        title = f"Task module `{config['task']}` for the embswap body `{fingerprint[:12]}`"
        text = (
            f"An embswap task module ({config['task']}, {len(config.get('labels', []))} labels, mode "
            f"`{config.get('mode')}`): the head and what fine-tuning changed in body `{fingerprint[:12]}`. "
            "Compose it with the body and the language pack of any language to run the task in that language."
        )
        return title, text
    title = f"embswap body `{fingerprint[:12]}`"
    text = (
        f"An embswap body: every weight of a {config.get('family')} model except its word embeddings and MLM output "
        "bias. Language packs add languages to it and task modules add tasks; neither changes it."
    )
    return title, text


def _details(config: dict, folder: Path) -> list[tuple[str, object]]:
    kind = config["kind"]
    rows: list[tuple[str, object]] = [("kind", kind)]
    if kind == "language_pack":
        rows += [
            ("language", config["language"]),
            ("vocabulary", f"{config['vocab_size']} tokens"),
            ("embedding size", config["hidden_size"]),
            ("MLM output bias", config.get("has_output_bias")),
            ("position embeddings (+pos)", config.get("position_embeddings")),
            ("language adapter", bool(config.get("adapter_config"))),
        ]
        weights = folder / PACK_WEIGHTS
        if weights.is_file():
            size = weights.stat().st_size
            rows.append(("weights", f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB"))
    elif kind == "task_module":
        rows += [
            ("task", config["task"]),
            ("labels", ", ".join(map(str, config.get("labels", [])))),
            ("mode", config.get("mode")),
            ("settings", config.get("settings")),
        ]
    else:
        model = config.get("model_config", {})
        rows += [
            ("family", config.get("family")),
            ("head", config.get("head")),
            ("layers", model.get("num_hidden_layers", model.get("n_layers"))),
            ("hidden size", model.get("hidden_size", model.get("dim"))),
            ("embedding size", config.get("embedding_dim")),
        ]
    rows += [
        ("body fingerprint", f"`{body_fingerprint_of(config)}`"),
        ("embswap version", config.get("embswap_version")),
    ]
    return rows


@dataclass(frozen=True)
class CardOptions:
    """What a card says beyond the artifacts' configs: the keyword options of ``artifact_card``, ``store_card``
    and ``card_for``. ``body_location``, ``base_model`` and ``datasets`` left None come from the provenance
    the configs record, where they record them."""

    location: str | None = None  # where the artifact or store is (or will be) published; default: its folder
    body_location: str | None = None  # where the body is published, for the usage lines
    license: str | None = None
    base_model: str | None = None
    datasets: list[str] | None = None
    eval_results: dict | None = None  # measured results; store_card reads the store's eval_results.json when None


def artifact_card(folder: str | os.PathLike, **options) -> ModelCard:
    """The card of one artifact folder. ``options`` (:class:`CardOptions`): ``location`` (where it is, or will be,
    published), ``body_location``, ``license``, ``base_model``, ``datasets``, ``eval_results``."""
    folder, given = Path(folder), CardOptions(**options)
    config = load_artifact_config(folder)
    kind, fingerprint = config["kind"], body_fingerprint_of(config)
    location = given.location or str(folder)
    provenance = config.get("provenance", {})
    body_location, datasets, base_model = given.body_location, given.datasets, given.base_model
    if body_location is None and kind != "body" and isinstance(provenance.get("body_location"), str):
        body_location = provenance["body_location"]
    if datasets is None and isinstance(provenance.get("datasets"), list):
        datasets = provenance["datasets"]
    if base_model is None and kind == "body":
        base_model = _repo_of(provenance.get("source"))
    data = card_data(
        kind,
        fingerprint,
        languages=_languages(config),
        location=location,
        license=given.license,
        base_model=base_model,
        body_location=body_location,
        datasets=datasets,
        extra_tags=[config["family"]] if kind == "body" and config.get("family") else (),
    )
    title, intro = _intro(config)
    results = _select_results(given.eval_results, config)
    sections = [
        f"# {title}",
        intro,
        _usage(kind, location, body_location, fingerprint),
        "## Details\n\n" + _table(_details(config, folder)) + "\n",
        _provenance_section(provenance),
        _results_section(results),
        _results_section(provenance.get("dev_metrics"), "Development set (training language)")
        if kind == "task_module"
        else "",
        f"## License\n\n{given.license}\n" if given.license else "",
    ]
    return _card(data, sections)


def _select_results(results: dict | None, config: dict) -> dict | None:
    """The part of store-wide results that concerns this artifact (a pack's language, all for others)."""
    if not results or config["kind"] != "language_pack":
        return results
    language = config["language"]
    picked = {
        task: per_lang[language]
        for task, per_lang in results.items()
        if isinstance(per_lang, dict) and isinstance(per_lang.get(language), dict)
    }
    return picked or (results.get(language) if isinstance(results.get(language), dict) else None)


def store_card(store_path: str | os.PathLike, **options) -> ModelCard:
    """The card at the root of a store: the body, every pack and task, and how to compose them. ``options``
    (:class:`CardOptions`): ``location``, ``body_location``, ``license``, ``base_model``, ``datasets``, ``eval_results``."""
    root, given = Path(store_path), CardOptions(**options)
    configs = [(folder.relative_to(root).as_posix(), load_artifact_config(folder)) for folder in artifact_folders(root)]
    if not configs:
        raise ArtifactNotFoundError(f"{root} holds no artifacts; it is not a store")
    eval_results = given.eval_results
    if eval_results is None and (root / EVAL_RESULTS).is_file():
        eval_results = json.loads((root / EVAL_RESULTS).read_text(encoding="utf-8"))
    location = given.location or str(root)
    fingerprint = body_fingerprint_of(configs[0][1])
    languages = [c["language"] for _, c in configs if c["kind"] == "language_pack"]
    body = next((c for _, c in configs if c["kind"] == "body"), None)
    base_model = given.base_model
    if base_model is None and body is not None:
        base_model = _repo_of(body.get("provenance", {}).get("source"))
    data = card_data(
        "store",
        fingerprint,
        languages=languages,
        location=location,
        license=given.license,
        base_model=base_model,
        datasets=given.datasets,
        extra_tags=[KIND_TAGS[c["kind"]] for _, c in configs],
    )

    def at(relative: str) -> str:
        return f"{location}:{relative}" if _repo_of(location) and ":" not in location else f"{location}/{relative}"

    lines = [
        f"| {rel} | {_KIND_NAMES[c['kind']]} | {c.get('language') or c.get('task') or c.get('family')} | "
        f"{_value(c.get('provenance', {}).get('objective') or c.get('provenance', {}).get('init') or '')} |"
        for rel, c in configs
    ]
    pack_rel = next((rel for rel, c in configs if c["kind"] == "language_pack"), "packs/LANG")
    task_rel = next((rel for rel, c in configs if c["kind"] == "task_module"), None)
    body_at = given.body_location or (at(STORE_BODY) if body is not None else "BODY")
    compose = (
        f"embswap compose --body {body_at} --pack {at(pack_rel)}"
        + (f" --task {at(task_rel)}" if task_rel else "")
        + " -o model"
    )
    sections = [
        f"# embswap store for body `{fingerprint[:12]}`",
        f"One frozen body, {len(languages)} language pack(s) ({', '.join(languages) or 'none'}) and "
        f"{sum(c['kind'] == 'task_module' for _, c in configs)} task module(s). Any pack composes with any task "
        "module into an ordinary `transformers` model.",
        "## Contents\n\n| folder | kind | language / task | made by |\n|---|---|---|---|\n" + "\n".join(lines) + "\n",
        "## Use it\n\n```bash\n" + compose + "\n```\n\n```python\nimport embswap\n"
        f'model, tokenizer = embswap.compose("{body_at}", "{at(pack_rel)}"'
        + (f', "{at(task_rel)}"' if task_rel else "")
        + ")\n```\n",
        _results_section(eval_results),
        f"## License\n\n{given.license}\n" if given.license else "",
    ]
    return _card(data, sections)


def _card(data: ModelCardData, sections: list[str]) -> ModelCard:
    body = "\n\n".join(s.strip("\n") for s in sections if s) + "\n"
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def card_for(path: str | os.PathLike, **options) -> ModelCard:
    """The card of an artifact folder or of a store folder."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        return artifact_card(path, **options)
    return store_card(path, **options)


def write_card(card: ModelCard, folder: str | os.PathLike) -> Path:
    """Write ``README.md`` into a folder (artifact folders accept it beside their listed files)."""
    path = Path(folder) / MODEL_CARD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(card), encoding="utf-8")
    return path
