"""Shared fixtures: tiny random models of every family, tokenizers trained on a few sentences."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# What loads verified is cached across processes (embswap.io.check_cache_dir): keep the tests' own.
os.environ.setdefault("EMBSWAP_CHECK_CACHE", __import__("tempfile").mkdtemp(prefix="embswap-checked-"))

import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist the workers share the cores: each gets its share of torch's threads instead of
# every worker starting one thread per core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

from tests.helpers.models import DE_TEXT, EN_TEXT, FAMILIES, family_registry_name, make_mlm, make_tokenizer, tiny_config  # noqa: E402,F401


@pytest.fixture(params=FAMILIES)
def family_mlm(request):
    return request.param, *make_mlm(request.param)


@pytest.fixture
def bert_mlm():
    return make_mlm("bert")


@pytest.fixture
def bert_store(tmp_path, bert_mlm):
    """A store with a tiny BERT body and an 'en' pack."""
    from embswap import Store, split_model

    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(pack)
    return store


def pytest_collection_modifyitems(config, items):
    """Slow tests first (a stable sort): under pytest-xdist the minutes-long ones then run side by side
    while the short ones fill the gaps, instead of one of them starting last and running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
