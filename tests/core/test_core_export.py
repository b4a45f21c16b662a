"""The exported folder is a plain transformers model: it loads without embswap, same logits."""

import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

from embswap import compose, export, split_model
from tests.helpers.models import EN_TEXT

_CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["embswap"] = None  # embswap must not be importable in this process
    import torch, transformers
    from safetensors.torch import save_file
    folder, out, auto = sys.argv[1], sys.argv[2], sys.argv[3]
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = getattr(transformers, auto).from_pretrained(folder).eval()
    batch = tok(sys.argv[4:], padding=True, return_tensors="pt")
    with torch.no_grad():
        save_file({"logits": model(**batch).logits.contiguous()}, out)
    """
)


def _logits_in_child(folder, tmp_path, auto, texts):
    out = tmp_path / "child.safetensors"
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(out), auto, *texts],
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    return load_file(out)["logits"]


def test_export_masked_lm_loads_without_embswap(tmp_path, family_mlm):
    name, model, tokenizer = family_mlm
    body, pack = split_model(model, tokenizer, "en")
    export(body, pack, None, tmp_path / "exported")
    live, _ = compose(body, pack)
    texts = EN_TEXT[:2]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = live(**batch).logits
    got = _logits_in_child(tmp_path / "exported", tmp_path, "AutoModelForMaskedLM", texts)
    assert torch.equal(expected, got)


def test_export_pipeline_fill_mask(tmp_path, bert_mlm):
    from transformers import pipeline

    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    export(body, pack, None, tmp_path / "exported")
    fill = pipeline("fill-mask", model=str(tmp_path / "exported"))
    results = fill("God saw the [MASK].")
    assert len(results) == 5 and all("score" in r for r in results)


def test_export_is_atomic_and_replaces(tmp_path, bert_mlm):
    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    target = tmp_path / "exported"
    export(body, pack, None, target)
    export(body, pack, None, target)
    siblings = sorted(p.name for p in tmp_path.iterdir())
    assert siblings == ["exported"]
