"""Model cards: metadata the Hub indexes, a body that explains the artifact, round trips through ModelCard."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from embswap import LanguagePack, Store, split_model
from embswap.cards import artifact_card, card_for, store_card, write_card
from embswap.cli.main import app
from embswap.hub import EVAL_RESULTS
from tests.helpers.models import make_mlm, random_task

runner = CliRunner()


@pytest.fixture
def store(tmp_path):
    model, tokenizer = make_mlm("bert")
    body, en = split_model(model, tokenizer, "en", provenance={"source": "google-bert/bert-base-uncased"})
    de = LanguagePack(
        language="de",
        tokenizer=en.tokenizer,
        word_embeddings=en.word_embeddings.clone(),
        output_bias=en.output_bias.clone(),
        body_fingerprint=body.fingerprint,
        provenance={"objective": "mlm+align", "minutes": 4.0, "mlm_loss": {"eval_final": 5.36}},
    )
    task = random_task(body, en)
    task.provenance.update(pack_language="en", dev_metrics={"accuracy": 61.3, "macro_f1": 60.2})
    st = Store(tmp_path / "store")
    st.save_body(body)
    st.save_pack(en)
    st.save_pack(de)
    st.save_task("genre", task)
    return st


def _round_trips(card: ModelCard, tmp_path) -> None:
    assert ModelCard(str(card)).data.to_dict() == card.data.to_dict()
    path = write_card(card, tmp_path)
    assert ModelCard.load(path).data.to_dict() == card.data.to_dict()
    assert ModelCard.load(path).text == card.text


def test_pack_card_metadata_and_text(tmp_path, store):
    fp = store.body.fingerprint
    card = artifact_card(
        store.pack_path("de"),
        location="me/packs:packs/de",
        body_location="me/bert-body@v1:body",
        license="apache-2.0",
        datasets=["me/bible-de"],
        eval_results={"genre": {"de": {"accuracy": 45.1, "n": 2000}, "en": {"accuracy": 61.3}}},
    )
    assert card.data.to_dict() == {
        "library_name": "embswap",
        "language": ["de"],
        "license": "apache-2.0",
        "tags": ["embswap", "language-pack", f"body-{fp[:12]}"],
        "base_model": "me/bert-body",
        "datasets": ["me/bible-de"],
    }
    text = card.text
    assert 'embswap.compose("me/bert-body@v1:body", "me/packs:packs/de")' in text
    assert "embswap compose --body me/bert-body@v1:body --pack me/packs:packs/de -o model" in text
    assert "mlm+align" in text and "5.36" in text  # provenance
    assert "| genre | 45.10 | 2000 |" in text and "61.30" not in text  # only this language's results
    assert fp in text
    _round_trips(card, tmp_path / "pack-card")


def test_pack_card_without_known_body_points_to_search(store):
    card = artifact_card(store.pack_path("de"), location="me/packs")
    assert card.data.base_model is None and card.data.license is None
    assert f"embswap search --body {store.body.fingerprint[:12]}" in card.text
    assert "--body BODY --pack me/packs" in card.text


def test_pack_in_same_repo_as_body_has_no_self_base_model(store):
    card = artifact_card(store.pack_path("de"), location="me/store:packs/de", body_location="me/store:body")
    assert card.data.base_model is None


def test_body_and_task_cards(tmp_path, store):
    body = artifact_card(store.body_path, location="me/bert-body")
    assert body.data.base_model == "google-bert/bert-base-uncased"  # where the body was split from
    assert body.data.tags == ["embswap", "embswap-body", f"body-{store.body.fingerprint[:12]}", "bert"]
    assert "| layers | 2 |" in body.text
    task = artifact_card(store.task_path("genre"), location="me/genre", body_location="me/bert-body")
    assert task.data.language == ["en"] and "task-module" in task.data.tags
    assert "Development set (training language)" in task.text and "61.30" in task.text
    assert '"me/bert-body", "PACK", "me/genre"' in task.text
    _round_trips(body, tmp_path / "b")
    _round_trips(task, tmp_path / "t")


def test_store_card_lists_everything_and_reads_eval_results(tmp_path, store):
    (store.path / EVAL_RESULTS).write_text(json.dumps({"genre": {"de": {"accuracy": 45.1}, "en": {"accuracy": 61.3}}}))
    card = store_card(store.path, location="me/store", license="mit")
    assert card.data.language == ["de", "en"] and card.data.license == "mit"
    assert card.data.base_model == "google-bert/bert-base-uncased"
    assert {"embswap", "embswap-store", "language-pack", "task-module"} <= set(card.data.tags)
    for row in ("| packs/de | language pack | de | mlm+align |", "| tasks/genre | task module | classification |"):
        assert row in card.text
    assert "embswap compose --body me/store:body --pack me/store:packs/de --task me/store:tasks/genre" in card.text
    assert "| genre / de | 45.10 |" in card.text
    _round_trips(card, tmp_path / "s")
    local = card_for(store.path)  # unpublished: paths in the examples are local
    assert f"--body {store.path}/body" in local.text


def test_readme_in_artifact_folder_is_accepted(store):
    write_card(artifact_card(store.pack_path("de")), store.pack_path("de"))
    assert LanguagePack.from_pretrained(store.pack_path("de"), verify=True).language == "de"


def test_cli_card_prints_and_writes(store):
    result = runner.invoke(app, ["card", str(store.pack_path("de")), "--repo", "me/packs:packs/de", "--license", "mit"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("---\n") and ModelCard(result.stdout).data.license == "mit"
    result = runner.invoke(app, ["card", str(store.path), "--write"])
    assert result.exit_code == 0, result.output
    assert ModelCard.load(store.path / "README.md").data.library_name == "embswap"
    assert Store(store.path).languages == ["de", "en"]
    assert torch.equal(store.pack("de").word_embeddings, store.pack("en").word_embeddings)
