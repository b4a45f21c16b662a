"""A real round trip through the Hugging Face Hub: push a pack to a private repo, pull it, delete the repo.

Runs only with ``HF_TOKEN`` set and huggingface.co reachable; otherwise it is skipped with the reason.
It runs in a child process because the test session is pinned offline (``HF_HUB_OFFLINE=1``).
"""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from embswap import split_model
from tests.helpers.models import make_mlm


def _hub_reachable() -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=3):
            return True
    except OSError:
        return False


_CHILD = textwrap.dedent(
    """
    import sys, uuid
    import torch
    from huggingface_hub import HfApi
    from embswap import LanguagePack
    from embswap.hub import pull
    folder, workdir = sys.argv[1], sys.argv[2]
    api = HfApi()
    repo = f"{api.whoami()['name']}/embswap-test-{uuid.uuid4().hex[:8]}"
    try:
        pack = LanguagePack.from_pretrained(folder)
        pack.push_to_hub(repo, private=True, subfolder="packs/en")
        again = LanguagePack.from_pretrained(f"{repo}:packs/en")
        assert torch.equal(again.word_embeddings, pack.word_embeddings)
        pulled = pull(repo, f"{workdir}/pulled")
        files = sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file())
        assert "packs/en/README.md" in files and "packs/en/embeddings.safetensors" in files, files
        print("ok", repo)
    finally:
        api.delete_repo(repo, missing_ok=True)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("HF_TOKEN"), reason="set HF_TOKEN to run the real Hub upload test")
def test_real_push_and_pull(tmp_path):
    if not _hub_reachable():
        pytest.skip("huggingface.co:443 is not reachable from this machine")
    model, tokenizer = make_mlm("bert")
    _, pack = split_model(model, tokenizer, "en")
    pack.save_pretrained(tmp_path / "pack")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "pack"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")
