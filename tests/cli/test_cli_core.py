"""The split / compose / inspect commands end to end on a tiny checkpoint folder."""

import json

import torch
import transformers
from typer.testing import CliRunner

from embswap import Store
from embswap.cli.main import app
from tests.helpers.models import EN_TEXT

runner = CliRunner()


def test_split_compose_inspect(tmp_path, bert_mlm):
    model, tokenizer = bert_mlm
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    result = runner.invoke(app, ["split", str(tmp_path / "ckpt"), "-o", str(tmp_path / "store"), "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert Store(tmp_path / "store").languages == ["en"]

    result = runner.invoke(
        app, ["compose", "--store", str(tmp_path / "store"), "--lang", "en", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    reloaded = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    batch = tokenizer(EN_TEXT[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)

    result = runner.invoke(app, ["inspect", str(tmp_path / "store"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["kind"] == "store" and [a["name"] for a in info["artifacts"]] == ["body", "en"]
    assert info["bytes"] > 0 and info["full_copies_bytes"] >= info["artifacts"][0]["bytes"]

    result = runner.invoke(app, ["inspect", str(tmp_path / "store" / "packs" / "en"), "--json"])
    info = json.loads(result.stdout)
    assert info["kind"] == "language_pack" and info["language"] == "en" and info["vocab_size"] == len(tokenizer)
    result = runner.invoke(app, ["inspect", str(tmp_path / "store")])
    assert result.exit_code == 0 and "language_pack" in result.stdout


def test_library_log_records_show_on_stderr_from_info_up(capsys):
    import logging

    from embswap.cli._common import show_library_logs

    library = logging.getLogger("embswap")
    handlers, level = list(library.handlers), library.level
    try:
        show_library_logs()
        show_library_logs()  # every command calls it: still one handler
        logging.getLogger("embswap.train.pretrain").info("tokenizing %s en lines", "1,000")
        logging.getLogger("embswap.train.pretrain").debug("a detail")
        logging.getLogger("elsewhere").warning("not the library's")
        assert capsys.readouterr().err == "tokenizing 1,000 en lines\n"
        assert [type(h).__name__ for h in library.handlers].count("_StderrLogHandler") == 1
    finally:
        library.handlers[:] = handlers
        library.setLevel(level)
