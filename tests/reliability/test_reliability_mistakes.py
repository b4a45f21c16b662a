"""Three classes of everyday mistakes, each tested as a generated family (tests/helpers/reliability_outputs.py,
which benchmarks/reliability.py runs longer):

- no writer replaces a user's file or folder, another kind of thing, its own input or a path inside one;
- a command whose output pipe closes still finishes and writes a whole artifact;
- every bad command line ends in one `error:` line (exit 1), or that line and a `try:` hint (exit 2).

The examples that found them are in test_reliability_outputs.py and test_reliability_bounds.py.
"""

import pytest

from embswap.errors import OutputPathError
from embswap.interop import export_adapters_embeddings
from embswap.outputs import ADAPTERS, TOKENIZER, check_card, kind_of
from tests.helpers import reliability_kit as kit
from tests.helpers import reliability_outputs as mistakes

# max_examples per family in the default suite (benchmarks/reliability.py runs more, with fresh seeds)
BUDGET = {"output_paths": 120, "closed_pipe": 2, "messages": 100}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return kit.make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(autouse=True)
def _no_check_cache(monkeypatch):
    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", "off")  # nothing outside the workspace is written


@pytest.mark.parametrize("family", list(BUDGET))
def test_generated_family(samples, family):
    before = kit.STATS[f"{family}:cases"]
    mistakes.FAMILIES[family](samples, BUDGET[family], derandomize=True)
    assert kit.STATS[f"{family}:cases"] - before >= BUDGET[family]


# --- the writers this class added to the guard ------------------------------------------------------


def test_card_write_only_into_an_artifact_or_store_and_over_a_card_only_with_overwrite(samples, tmp_path):
    ws = mistakes.workspace(samples)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    for folder, message in [
        (mine, f"{mine} is a folder of other files (it has no body/, packs/ or tasks/), not an artifact or a store"),
        (ws.tok, f"{ws.tok} is a tokenizer folder, not an artifact or a store"),
        (ws.pack / "tokenizer", f"{ws.pack / 'tokenizer'} is inside {ws.pack}, a language pack"),
    ]:
        code, out, err = mistakes.run_cli(["card", folder, "--write"])
        assert (code, out) == (1, "") and err.startswith(f"error: {message}"), err
    assert (mine / "README.md").read_text() == "my notes\n" and not (ws.tok / "README.md").exists()
    pack = tmp_path / "pack"
    import shutil

    shutil.copytree(ws.pack, pack)
    assert mistakes.run_cli(["card", pack, "--write"])[0] == 0
    (pack / "README.md").write_text("edited by hand\n")
    code, _, err = mistakes.run_cli(["card", pack, "--write"])
    assert code == 1 and err == (
        f"error: {pack / 'README.md'} already exists (it may hold your edits); pass --overwrite to replace it "
        "with the generated card\n"
    )
    assert (pack / "README.md").read_text() == "edited by hand\n"
    assert mistakes.run_cli(["card", pack, "--write", "--overwrite"])[0] == 0
    assert (pack / "README.md").read_text().startswith("---\n") and kind_of(pack) == "language_pack"
    assert sorted(p.name for p in pack.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    (pack / "README.md").unlink()
    (pack / "README.md").symlink_to(mine / "README.md")
    with pytest.raises(OutputPathError, match="not an artifact or a store"):  # a link makes it a user's folder
        check_card(pack, replace=True)


def test_adapters_export_replaces_only_an_earlier_export(samples, tmp_path):
    ws = mistakes.workspace(samples)
    out = tmp_path / "emb"
    export_adapters_embeddings(ws.pack, out)
    assert kind_of(out) == ADAPTERS and kind_of(out / "tokenizer") == TOKENIZER
    export_adapters_embeddings(ws.pack, out)  # an earlier export is replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(
        OutputPathError, match=r"emb is a folder that is not an adapters embeddings folder \(it holds notes.txt"
    ):
        export_adapters_embeddings(ws.pack, out)
    with pytest.raises(OutputPathError, match="an input of this command"):
        export_adapters_embeddings(ws.pack, ws.pack.parent)  # the folder that holds the pack
    with pytest.raises(OutputPathError, match="is inside .*tok, a tokenizer folder"):
        export_adapters_embeddings(ws.pack, ws.tok / "emb")
    assert (out / "notes.txt").read_text() == "mine" and not (ws.tok / "emb").exists()


# --- bad values found before any work, and messages that say what to do -----------------------------


def _usage(command: str, message: str) -> str:
    return f"error: {message}\ntry: embswap {command} --help\n"


def test_training_commands_refuse_out_of_range_values_and_unknown_choices_before_any_work(samples, tmp_path):
    from embswap.architectures import supported_families

    ws = mistakes.workspace(samples)
    out = tmp_path / "out"
    families = ", ".join(supported_families())
    tokenizer = ["tokenizer", "train", "--text", ws.text, "-o", out]
    transfer = ["transfer", "--body", ws.body, "--lang", "de", "--text", ws.text, "-o", out]
    pretrain = ["pretrain", "--lang", "de", "--text", ws.text, "-o", out]
    finetune = ["finetune", "--body", ws.body, "--pack", ws.pack, "--task", "classification", "--train", ws.rows]
    finetune += ["-o", out]
    cases = [
        (tokenizer + ["--vocab-size", "-5"], 2, "Invalid value for '--vocab-size': Input should be greater than or equal to 1"),
        (tokenizer + ["--vocab-size", "5"], 2,
         "Invalid value for --vocab-size: 5 leaves no room beyond the 5 special tokens; give more than 5"),
        (tokenizer + ["--family", "gpt2"], 2, f"Invalid value for --family: expected one of: {families}"),
        (transfer + ["--vocab-size", "4"], 2,
         "Invalid value for --vocab-size: 4 leaves no room beyond the 5 special tokens; give more than 5"),
        (transfer + ["--seq-len", "7"], 2, "Invalid value for '--seq-len': Input should be greater than or equal to 8"),
        (transfer + ["--max-steps", "-1"], 2, "Invalid value for '--max-steps': Input should be greater than or equal to 0"),
        (transfer + ["--objective", "mlm+bogus"], 2,
         "Invalid value for --objective: 'mlm+bogus' is not one of: align, mlm, or several joined by '+' (mlm+align)"),
        (pretrain + ["--family", "huge"], 2, f"Invalid value for --family: expected one of: {families}"),
        (pretrain + ["--batch-size", "0"], 2, "Invalid value for '--batch-size': Input should be greater than or equal to 1"),
        (finetune + ["--epochs", "-1"], 2, "Invalid value for '--epochs': Input should be greater than or equal to 0"),
        (finetune + ["--epochs", "0"], 1, "epochs is 0.0; give a positive number of epochs or --max-steps"),
        (finetune + ["--noise", "-0.1"], 1,
         "noise is a standard deviation, got -0.1; give 0 or more (the paper: 0.075)"),
    ]  # fmt: skip
    for argv, code, message in cases:
        command = "tokenizer train" if argv[0] == "tokenizer" else argv[0]
        expected = _usage(command, message) if code == 2 else f"error: {message}\n"
        assert mistakes.run_cli(argv) == (code, "", expected), argv  # the error line is all that is printed
        assert not out.exists()


def test_compose_refuses_an_empty_task_name_by_the_name_rule(samples, tmp_path):
    from embswap.names import NAME_RULE

    ws = mistakes.workspace(samples)
    for given in (["--store", ws.store, "--lang", "en"], ["--body", ws.body, "--pack", ws.pack]):
        argv = ["compose", *given, "--task", "", "-o", tmp_path / "out"]
        assert mistakes.run_cli(argv) == (1, "", f"error: task name '' is not allowed: use {NAME_RULE}\n")
        assert not (tmp_path / "out").exists()


def test_a_hugging_face_model_folder_where_an_artifact_is_expected_is_named_as_one_with_what_to_do(samples, tmp_path):
    from embswap import Body, LanguagePack, TaskModule
    from embswap.errors import CorruptArtifactError

    ws = mistakes.workspace(samples)
    argv = ["finetune", "--body", ws.body, "--pack", ws.ckpt, "--task", "classification", "--train", ws.rows]
    code, out, err = mistakes.run_cli([*argv, "-o", tmp_path / "out"])
    assert (code, out, err.splitlines()[-1]) == (
        1,
        "",
        f"error: {ws.ckpt} is a Hugging Face model folder (model_type 'bert'), not an embswap language pack; make a "
        f"store of it with `embswap split {ws.ckpt} --lang CODE -o STORE` and pass STORE/packs/CODE",
    )
    with pytest.raises(CorruptArtifactError) as caught:
        Body.from_pretrained(ws.model)
    assert str(caught.value) == (
        f"{ws.model} is a Hugging Face model folder (model_type 'bert'), not an embswap body; make a store of it "
        f"with `embswap split {ws.model} --lang CODE -o STORE` and pass STORE/body"
    )
    with pytest.raises(CorruptArtifactError) as caught:
        TaskModule.from_pretrained(ws.ckpt)
    assert str(caught.value) == (
        f"{ws.ckpt} is a Hugging Face model folder (model_type 'bert'), not an embswap task module; a task module "
        "is trained on a body with `embswap finetune` (STORE/tasks/NAME)"
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"name": "my settings"}')
    with pytest.raises(CorruptArtifactError) as caught:
        LanguagePack.from_pretrained(other)
    assert str(caught.value) == (
        f"{other} is not an embswap artifact (its config.json has no 'kind'); pass the folder of a saved language pack"
    )


@pytest.mark.parametrize("command", ["transfer", "pretrain", "finetune", "evaluate", "diagnose"])
def test_a_bad_device_is_a_usage_error_naming_the_forms_it_takes(samples, tmp_path, command):
    ws = mistakes.workspace(samples)
    out = tmp_path / "out"
    argv = {
        "transfer": ["--body", ws.body, "--lang", "de", "--text", ws.text, "-o", out],
        "pretrain": ["--lang", "de", "--text", ws.text, "-o", out],
        "finetune": ["--body", ws.body, "--pack", ws.pack, "--task", "classification", "--train", ws.rows, "-o", out],
        "evaluate": ["--store", ws.store, "--task", "genre", "--lang", "en", "--data", ws.rows],
        "diagnose": ["--store", ws.store, "--task", "genre", "--data", ws.rows],
    }[command]
    message = "Invalid value for --device: '../x' is not a device; use cpu, cuda, cuda:N (N: the GPU's number) or mps"
    assert mistakes.run_cli([command, *argv, "--device", "../x"]) == (2, "", _usage(command, message))
    assert not out.exists()


def test_check_device_takes_cpu_cuda_cuda_n_and_mps_only():
    import typer

    from embswap.cli._options import check_device

    for device in (None, "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert check_device(device) == device
    for device in ("", "gpu", "cuda:", "cuda:x", "CPU", "cpu ", "mps:0", "../x"):
        with pytest.raises(typer.BadParameter, match="is not a device"):
            check_device(device)


def test_export_jsonl_replaces_an_existing_file_only_when_told_to(tmp_path):
    from embswap.data.bible import export_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_text("mine\n", encoding="utf-8")
    with pytest.raises(OutputPathError) as caught:
        export_jsonl(["a"], path)
    assert str(caught.value) == (
        f"{path} already holds a file; allow it (overwrite=True) to replace it, or choose another output path"
    )
    assert path.read_text(encoding="utf-8") == "mine\n"
    assert export_jsonl(["a"], path, overwrite=True) == 1
    assert path.read_text(encoding="utf-8") == '{"text": "a"}\n'
