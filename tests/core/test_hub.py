"""Hub paths without a network.

Pushes are intercepted at the ``HfApi`` boundary (create_repo / create_branch / list_repo_files /
create_commit) by a fake server that records every commit and lays its tree out in a local cache the
way the Hub client does (``models--user--repo/{blobs, refs, snapshots}``). Downloads then go through
huggingface_hub's real offline resolution (``HF_HUB_OFFLINE=1``) against that cache.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
import transformers
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.hf_api import CommitInfo, RepoUrl
from typer.testing import CliRunner

from embswap import (
    ArtifactNotFoundError,
    Body,
    EmbswapError,
    LanguagePack,
    Store,
    TaskModule,
    compose,
    hub,
    split_model,
)
from embswap.cli.main import app
from embswap.io import file_sha256
from embswap.train.tokenizer import train_tokenizer
from tests.helpers.models import DE_TEXT, make_mlm, random_task

runner = CliRunner()


class FakeHub:
    """The Hub server as seen through HfApi: repos, branches, commits; each commit cached like the client does."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.trees: dict[tuple[str, str], dict[str, bytes]] = {}
        self.calls: list[tuple] = []
        self.commits: list[dict] = []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None, **_):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        self.trees.setdefault(
            (repo_id, "main"), {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        )
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, *, branch, revision=None, exist_ok=False, **_):
        self.calls.append(("create_branch", repo_id, branch, exist_ok))
        self.trees.setdefault((repo_id, branch), dict(self.trees[(repo_id, revision or "main")]))

    def list_repo_files(self, repo_id, *, revision=None, **_):
        return sorted(self.trees[(repo_id, revision or "main")])

    def create_commit(self, repo_id, operations, *, commit_message, revision=None, **_):
        operations = list(operations)
        branch = revision or "main"
        tree = self.trees[(repo_id, branch)]
        for op in operations:
            if isinstance(op, CommitOperationDelete):
                for path in [
                    p for p in tree if p == op.path_in_repo or p.startswith(op.path_in_repo.rstrip("/") + "/")
                ]:
                    del tree[path]
            else:
                source = op.path_or_fileobj
                tree[op.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
        commit = self.write(repo_id, branch, tree)
        self.calls.append(("create_commit", repo_id, branch))
        self.commits.append(
            {"repo": repo_id, "revision": revision, "message": commit_message, "operations": operations, "oid": commit}
        )
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}",
            commit_message=commit_message,
            commit_description="",
            oid=commit,
        )

    def write(self, repo_id: str, branch: str, tree: dict[str, bytes]) -> str:
        """Lay a tree out as huggingface_hub caches it: blobs by hash, snapshot symlinks, refs/<branch>."""
        commit = hashlib.sha1(
            json.dumps({k: hashlib.sha256(v).hexdigest() for k, v in sorted(tree.items())}).encode()
        ).hexdigest()
        repo_dir = self.cache / f"models--{repo_id.replace('/', '--')}"
        for path, data in tree.items():
            blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = repo_dir / "snapshots" / commit / path
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(os.path.relpath(blob, link.parent))
        ref = repo_dir / "refs" / branch
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
        return commit


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    server = FakeHub(cache)
    for name in ("create_repo", "create_branch", "list_repo_files", "create_commit"):
        monkeypatch.setattr(HfApi, name, lambda self, *a, _name=name, **k: getattr(server, _name)(*a, **k))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest sets HF_HUB_OFFLINE=1: nothing reaches the network
    return server


@pytest.fixture
def store(tmp_path):
    """A store with a body, packs en and de and a classification task."""
    model, tokenizer = make_mlm("bert")
    body, en = split_model(model, tokenizer, "en")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", min_frequency=1)
    torch.manual_seed(1)
    de = LanguagePack(
        language="de",
        tokenizer=de_tok,
        word_embeddings=torch.randn(len(de_tok), 32),
        output_bias=torch.randn(len(de_tok)),
        body_fingerprint=body.fingerprint,
        provenance={"objective": "mlm", "steps": 10},
    )
    st = Store(tmp_path / "store")
    st.save_body(body)
    st.save_pack(en)
    st.save_pack(de)
    st.save_task("topic", random_task(body, en))
    return st


def _paths(commit) -> list[str]:
    return [op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationAdd)]


def _deleted(commit) -> list[str]:
    return [op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationDelete)]


def _logits(model, tokenizer, texts):
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("user/repo", ("user/repo", None, None)),
        ("user/repo@dev", ("user/repo", "dev", None)),
        ("user/repo:packs/de", ("user/repo", None, "packs/de")),
        ("user/my.repo-2@v1.0:packs/de", ("user/my.repo-2", "v1.0", "packs/de")),
        ("user/repo@refs/pr/1:body", ("user/repo", "refs/pr/1", "body")),
        ("no-namespace", None),
        ("a/b/c", None),
    ],
)
def test_parse_hub_spec(spec, expected):
    assert hub.parse_hub_spec(spec) == expected
    if expected:
        assert hub.hub_location(*expected) == spec


def test_push_pack_commit_operations(tmp_path, fake_hub, store):
    pack = store.pack("de")
    pack.push_to_hub("user/packs", subfolder="packs/de", license="apache-2.0")
    assert [c[0] for c in fake_hub.calls] == ["create_repo", "create_commit"]  # no branch without a revision
    assert fake_hub.calls[0] == ("create_repo", "user/packs", False, True)
    (commit,) = fake_hub.commits
    local = pack.save_pretrained(tmp_path / "same-pack")  # what the push saved, byte for byte
    expected = sorted(
        [
            "packs/de/README.md",
            "packs/de/config.json",
            *(f"packs/de/{f}" for f in json.loads((local / "config.json").read_text())["files"]),
        ]
    )
    assert _paths(commit) == expected
    assert expected == [
        "packs/de/README.md",
        "packs/de/config.json",
        "packs/de/embeddings.safetensors",
        "packs/de/tokenizer/special_tokens_map.json",
        "packs/de/tokenizer/tokenizer.json",
        "packs/de/tokenizer/tokenizer_config.json",
    ]
    for op in commit["operations"]:
        if op.path_in_repo.endswith("README.md"):
            card = op.path_or_fileobj.decode()
            assert "library_name: embswap" in card and f"body-{pack.body_fingerprint[:12]}" in card
            continue
        assert op.upload_info.sha256.hex() == file_sha256(local / op.path_in_repo[len("packs/de/") :]), op.path_in_repo
    assert commit["message"].startswith("embswap: upload language pack 'de'")
    assert _deleted(commit) == []


def test_push_revision_creates_branch_and_commits_there(fake_hub, store):
    store.body.push_to_hub("user/body", revision="dev", commit_message="v2")
    assert [c[0] for c in fake_hub.calls] == ["create_repo", "create_branch", "create_commit"]
    assert fake_hub.calls[1] == ("create_branch", "user/body", "dev", True)
    assert fake_hub.commits[0]["revision"] == "dev" and fake_hub.commits[0]["message"] == "v2"
    assert _paths(fake_hub.commits[0]) == ["README.md", "body.safetensors", "config.json"]


def test_repush_deletes_only_the_artifacts_stale_files(fake_hub, store):
    fake_hub.create_repo("user/packs")
    fake_hub.trees[("user/packs", "main")].update(
        {
            "packs/de/old.safetensors": b"x",
            "packs/de/tokenizer/vocab.txt": b"x",  # left by an earlier push
            "packs/de/notes/keep.txt": b"x",
            "packs/fr/config.json": b"{}",
            "README.md": b"root card",
        }
    )
    hub.push_folder(store.pack_path("de"), "user/packs@main:packs/de")
    (commit,) = fake_hub.commits
    assert _deleted(commit) == ["packs/de/old.safetensors", "packs/de/tokenizer/vocab.txt"]
    tree = fake_hub.trees[("user/packs", "main")]
    assert {"packs/fr/config.json", "packs/de/notes/keep.txt", "README.md"} <= set(tree)


def test_push_store_then_load_everything_from_the_cache(fake_hub, store):
    (store.path / hub.EVAL_RESULTS).write_text(
        json.dumps({"topic": {"de": {"accuracy": 41.5}, "en": {"accuracy": 60.0}}})
    )
    hub.push_store(store.path, "user/store", private=True)
    (commit,) = fake_hub.commits
    paths = _paths(commit)
    assert fake_hub.calls[0] == ("create_repo", "user/store", True, True)
    for folder in ("body", "packs/de", "packs/en", "tasks/topic"):
        assert f"{folder}/README.md" in paths and f"{folder}/config.json" in paths
    assert "README.md" in paths and hub.EVAL_RESULTS in paths
    assert not any(p.endswith((".bin", ".pt", ".py", ".pkl")) for p in paths)
    root_card = next(op for op in commit["operations"] if op.path_in_repo == "README.md").path_or_fileobj.decode()
    assert (
        "embswap compose --body user/store:body --pack user/store:packs/de --task user/store:tasks/topic" in root_card
    )
    assert "41.50" in root_card

    de = LanguagePack.from_pretrained("user/store:packs/de")
    assert torch.equal(de.word_embeddings, store.pack("de").word_embeddings)
    assert Body.from_pretrained("user/store:body").fingerprint == store.body.fingerprint
    assert TaskModule.from_pretrained("user/store:tasks/topic").labels == ["a", "b", "c"]
    remote, tok = compose("user/store:body", "user/store:packs/de", "user/store:tasks/topic")
    local, _ = compose(store.body, store.pack("de"), store.task("topic"))
    assert torch.equal(_logits(remote, tok, DE_TEXT[:3]), _logits(local, tok, DE_TEXT[:3]))


def test_revision_branch_and_commit_resolution(fake_hub, store):
    hub.push_store(store.path, "user/store")
    main_commit = fake_hub.commits[0]["oid"]
    v1 = store.pack("de")
    v2 = LanguagePack(
        language="de",
        tokenizer=v1.tokenizer,
        word_embeddings=v1.word_embeddings + 1,
        output_bias=v1.output_bias,
        body_fingerprint=v1.body_fingerprint,
    )
    v2.push_to_hub("user/store", revision="dev", subfolder="packs/de")
    assert torch.equal(LanguagePack.from_pretrained("user/store@dev:packs/de").word_embeddings, v2.word_embeddings)
    assert torch.equal(LanguagePack.from_pretrained("user/store:packs/de").word_embeddings, v1.word_embeddings)
    assert torch.equal(
        LanguagePack.from_pretrained("user/store:packs/de", revision="dev").word_embeddings, v2.word_embeddings
    )
    assert torch.equal(
        LanguagePack.from_pretrained(f"user/store@{main_commit}:packs/de").word_embeddings, v1.word_embeddings
    )
    with pytest.raises(EmbswapError, match="also given"):
        LanguagePack.from_pretrained("user/store@dev:packs/de", revision="main")


def test_missing_repo_or_subfolder_is_a_clear_error(fake_hub, store):
    hub.push_store(store.path, "user/store")
    with pytest.raises(ArtifactNotFoundError, match="cannot fetch user/nothing"):
        LanguagePack.from_pretrained("user/nothing:packs/de")
    with pytest.raises(ArtifactNotFoundError, match="has no folder 'packs/xx'"):
        LanguagePack.from_pretrained("user/store:packs/xx")
    with pytest.raises(ArtifactNotFoundError, match="cannot fetch"):
        LanguagePack.from_pretrained("user/store@nope:packs/de")


def test_pull_copies_only_weights_configs_and_cards(tmp_path, fake_hub, store):
    hub.push_store(store.path, "user/store")
    tree = fake_hub.trees[("user/store", "main")]
    tree.update({"pytorch_model.bin": b"pickle", "packs/de/modeling.py": b"import os"})  # someone else's commit
    fake_hub.write("user/store", "main", tree)
    out = hub.pull("user/store", tmp_path / "pulled")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "pytorch_model.bin" not in files and "packs/de/modeling.py" not in files and ".gitattributes" not in files
    assert "README.md" in files and "packs/de/README.md" in files
    pulled = Store(out)
    assert pulled.languages == ["de", "en"] and pulled.task_names == ["topic"]
    assert torch.equal(pulled.pack("en").word_embeddings, store.pack("en").word_embeddings)
    single = hub.pull("user/store:packs/de", tmp_path / "de")
    assert LanguagePack.from_pretrained(single, verify=True).language == "de"
    with pytest.raises(EmbswapError, match="already holds a store; pass --overwrite"):
        hub.pull("user/store", tmp_path / "pulled")


def test_cli_push_pull_compose_from_cache(tmp_path, fake_hub, store):
    result = runner.invoke(app, ["push", str(store.path), "--repo", "user/store", "--license", "apache-2.0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["commit"] == fake_hub.commits[0]["oid"]
    result = runner.invoke(
        app,
        [
            "push",
            str(store.pack_path("de")),
            "--repo",
            "user/other",
            "--subfolder",
            "packs/de",
            "--body-repo",
            "user/store:body",
        ],
    )
    assert result.exit_code == 0, result.output
    card = next(op for op in fake_hub.commits[1]["operations"] if op.path_in_repo == "packs/de/README.md")
    assert "base_model: user/store" in card.path_or_fileobj.decode()

    result = runner.invoke(
        app, ["compose", "--body", "user/store:body", "--pack", "user/other:packs/de", "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    exported = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "m").eval()
    local, tok = compose(store.body, store.pack("de"))
    assert torch.equal(_logits(exported, tok, DE_TEXT[:2]), _logits(local, tok, DE_TEXT[:2]))

    result = runner.invoke(app, ["pull", "user/store:tasks/topic", "-o", str(tmp_path / "task"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["artifacts"] == ["."]
    result = runner.invoke(app, ["pull", "user/missing", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and "error: cannot fetch user/missing" in result.output


def test_cli_store_and_inspect_accept_hub_ids(tmp_path, fake_hub, store):
    hub.push_store(store.path, "user/store")
    result = runner.invoke(
        app, ["compose", "--store", "user/store", "--lang", "de", "--task", "topic", "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    exported = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    local, tok = compose(store.body, store.pack("de"), store.task("topic"))
    assert torch.equal(_logits(exported, tok, DE_TEXT[:2]), _logits(local, tok, DE_TEXT[:2]))
    result = runner.invoke(app, ["inspect", "user/store:packs/de", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["language"] == "de"
    result = runner.invoke(app, ["inspect", "user/store", "--json"])
    assert [a["name"] for a in json.loads(result.stdout)["artifacts"]] == ["body", "de", "en", "topic"]


@pytest.mark.slow  # a fresh interpreter imports torch + transformers: ~5 s CPU, longer on a busy 2-core machine
def test_console_script_resolves_through_hf_hub_cache_env(tmp_path, fake_hub, store):
    """The real `embswap` process, configured only by HF_HUB_CACHE / HF_HUB_OFFLINE, composes from the cache."""
    hub.push_store(store.path, "user/store")
    env = {**os.environ, "HF_HUB_CACHE": str(fake_hub.cache), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "embswap.cli.main",
        "compose",
        "--body",
        "user/store:body",
        "--pack",
        "user/store:packs/de",
        "-o",
        str(tmp_path / "m"),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file()


class _Info:
    def __init__(self, repo, tags, languages):
        self.id, self.tags, self.card_data = repo, tags, {"language": languages}
        self.last_modified, self.downloads = None, 3


def test_search_filters_by_fingerprint_tag_and_language(tmp_path, fake_hub, store, monkeypatch):
    hub.push_store(store.path, "user/store")
    fingerprint = store.body.fingerprint
    seen = []

    def list_models(self, **kwargs):
        seen.append(kwargs)
        return [
            _Info("user/store", ["embswap", "embswap-store", f"body-{fingerprint[:12]}", "de", "en"], ["de", "en"]),
            _Info("x/loose-match", ["embswap", "body-000000000000"], ["de"]),
        ]

    monkeypatch.setattr(HfApi, "list_models", list_models)
    for body in (
        "user/store",
        "user/store:body",
        str(store.body_path),
        str(store.path),
        fingerprint[:12],
        "user/store:packs/de",
    ):
        rows = hub.search(body, "de")
        assert [r["repo"] for r in rows] == ["user/store"], body
        assert seen[-1]["filter"] == ["embswap", f"body-{fingerprint[:12]}"] and seen[-1]["language"] == "de"
    result = runner.invoke(app, ["search", "--body", "user/store", "--lang", "de", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["kinds"] == ["store"]
    result = runner.invoke(app, ["search", "--body", fingerprint[:12]])
    assert result.exit_code == 0 and "user/store" in result.stdout
    result = runner.invoke(app, ["search", "--body", "user/unknown"])
    assert result.exit_code == 1 and "error: cannot read user/unknown" in result.output


def test_push_offline_or_unreachable_is_one_line(store, monkeypatch):
    # No fake server: HfApi itself refuses because HF_HUB_OFFLINE=1.
    result = runner.invoke(app, ["push", str(store.pack_path("de")), "--repo", "user/packs"])
    assert result.exit_code == 1 and "HF_HUB_OFFLINE is set" in result.output
    with pytest.raises(EmbswapError, match="not a Hub repo id"):
        hub.push_folder(store.pack_path("de"), "a/b/c")
    with pytest.raises(EmbswapError, match="also given"):
        hub.push_folder(store.pack_path("de"), "user/packs:packs/de", subfolder="packs/fr")
