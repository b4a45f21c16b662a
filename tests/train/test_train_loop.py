"""The generic training loop: bit-identical resume, safetensors+JSON checkpoints, logs, budgets."""

import json

import pytest
import torch
from torch import nn

from embswap.errors import TrainingError
from embswap.train.checkpoint import STATE_DIR, flatten_optimizer_state, has_checkpoint, unflatten_optimizer_state
from embswap.train.loop import CURVE_NAME, LOG_NAME, LoopConfig, derive_seed, train


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and a busy 2-core machine makes OpenMP spin.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Toy(nn.Module):
    """An embedding + dropout + linear regressor: the RNG (dropout) matters for bit-identity."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(8, 1)

    def forward(self, batch):
        hidden = self.drop(torch.tanh(self.frozen(self.emb(batch["input_ids"]))))
        pred = self.out(hidden).squeeze(-1).mean(-1)
        loss = ((pred - batch["target"]) ** 2).mean()
        return {"loss": loss, "pred_mean": pred.mean().detach()}


def toy_batches(step, process_index=0, num_processes=1):
    gen = torch.Generator().manual_seed(derive_seed("toy", step))
    ids = torch.randint(0, 50, (4, 6), generator=gen)
    return {"input_ids": ids, "target": ids.float().mean(-1) / 50, "attention_mask": torch.ones_like(ids)}


def trained(module):
    return {"emb": module.emb.weight, "out.weight": module.out.weight, "out.bias": module.out.bias}


def run(tmp_path, max_steps, *, resume=False, checkpoint_every=3, batches=toy_batches, schedule="linear", **kw):
    module = Toy()
    config = LoopConfig(
        max_steps=max_steps,
        lr=0.05,
        warmup_steps=2,
        schedule=schedule,
        checkpoint_every=checkpoint_every,
        log_every=1,
        progress=False,
        device="cpu",
        **kw,
    )
    result = train(
        module,
        trained(module),
        batches,
        config,
        checkpoint_dir=tmp_path / "ckpt",
        resume=resume,
        settings={"data": "toy"},
    )
    return module, result


def assert_same_weights(a, b):
    for (name, x), y in zip(trained(a).items(), trained(b).values()):
        assert torch.equal(x, y), name


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    reference, _ = run(tmp_path / "a", 6)

    def crash_at_4(step, *args):
        if step == 4:
            raise RuntimeError("power cut")
        return toy_batches(step, *args)

    with pytest.raises(RuntimeError):
        run(tmp_path / "b", 6, batches=crash_at_4)
    assert json.loads((tmp_path / "b" / "ckpt" / STATE_DIR / "state.json").read_text())["step"] == 3
    resumed, result = run(tmp_path / "b", 6, resume=True)
    assert result.resumed_from == 3 and result.step == 6
    assert_same_weights(reference, resumed)
    # The log holds each step once: what the crashed run logged after step 3 was dropped.
    steps = [r["step"] for r in result.history if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_keeps_the_finished_steps(tmp_path):
    reference, _ = run(tmp_path / "a", 6)

    def ctrl_c_at_5(step, *args):
        if step == 5:
            raise KeyboardInterrupt
        return toy_batches(step, *args)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", 6, batches=ctrl_c_at_5)
    resumed, result = run(tmp_path / "b", 6, resume=True)
    assert result.resumed_from == 5
    assert_same_weights(reference, resumed)


def test_three_steps_then_resume_to_six_is_bit_identical(tmp_path):
    # A constant schedule does not depend on max_steps, so stopping at 3 is a true interruption.
    reference, _ = run(tmp_path / "a", 6, schedule="constant")
    _, first = run(tmp_path / "b", 3, schedule="constant")
    assert first.step == 3
    resumed, result = run(tmp_path / "b", 6, schedule="constant", resume=True)
    assert result.resumed_from == 3
    assert_same_weights(reference, resumed)
    assert result.tokens_seen == 6 * 24


def test_checkpoint_is_safetensors_and_json_only(tmp_path):
    run(tmp_path, 4, checkpoint_every=2)
    state = tmp_path / "ckpt" / STATE_DIR
    assert sorted(p.name for p in state.iterdir()) == [
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
        "trainable.safetensors",
    ]
    meta = json.loads((state / "state.json").read_text())
    assert meta["step"] == 4 and meta["seed"] == 0 and meta["settings"] == {"data": "toy"}
    assert set(meta["params"]) == {"emb", "out.weight", "out.bias"}
    from safetensors.torch import load_file

    rng = load_file(state / "rng.safetensors")
    assert rng["torch"].dtype == torch.uint8


def test_resume_refuses_other_settings(tmp_path):
    run(tmp_path, 3)
    module = Toy()
    config = LoopConfig(max_steps=6, lr=0.05, progress=False, device="cpu")
    with pytest.raises(TrainingError, match="data="):
        train(
            module,
            trained(module),
            toy_batches,
            config,
            checkpoint_dir=tmp_path / "ckpt",
            resume=True,
            settings={"data": "other"},
        )
    with pytest.raises(TrainingError, match="seed"):
        train(
            module,
            trained(module),
            toy_batches,
            LoopConfig(max_steps=6, seed=1, progress=False, device="cpu"),
            checkpoint_dir=tmp_path / "ckpt",
            resume=True,
            settings={"data": "toy"},
        )


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    _, result = run(tmp_path, 2, resume=True)
    assert result.resumed_from is None and result.step == 2 and has_checkpoint(tmp_path / "ckpt")


def test_log_curve_and_eval_hook(tmp_path):
    module = Toy()
    calls = []

    def eval_fn():
        calls.append(1)
        return {"mse": 0.5}

    config = LoopConfig(
        max_steps=5, lr=0.05, log_every=2, checkpoint_every=None, eval_every=2, progress=False, device="cpu"
    )
    result = train(module, trained(module), toy_batches, config, checkpoint_dir=tmp_path / "ckpt", eval_fn=eval_fn)
    records = [json.loads(line) for line in (tmp_path / "ckpt" / LOG_NAME).read_text().splitlines()]
    assert records == result.history
    train_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_records] == [2, 4, 5]
    assert {"step", "loss", "lr", "tokens", "tokens_per_s", "elapsed", "pred_mean"} <= set(train_records[0])
    assert [r["step"] for r in records if "eval_mse" in r] == [0, 2, 4, 5]
    assert len(calls) == 4
    assert (tmp_path / "ckpt" / CURVE_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_budget_stops_and_checkpoints(tmp_path):
    _, result = run(tmp_path, 1000, max_minutes=1e-9)
    assert result.stopped_by == "max_minutes" and result.step < 1000
    assert has_checkpoint(tmp_path / "ckpt")


def test_schedule_warmup_and_linear_decay():
    config = LoopConfig(max_steps=10, warmup_steps=2)
    assert [config.lr_factor(s) for s in (0, 1)] == [0.5, 1.0]
    assert config.lr_factor(2) == 1.0 and config.lr_factor(6) == 0.5 and config.lr_factor(9) == pytest.approx(0.125)
    assert LoopConfig(max_steps=10, schedule="constant").lr_factor(9) == 1.0


def test_optimizer_state_flattens_and_restores_exactly():
    params = [nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(3))]
    opt = torch.optim.AdamW(params, lr=0.1, betas=(0.8, 0.9))
    sum(p.sum() for p in params).backward()
    opt.step()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    fresh = torch.optim.AdamW([nn.Parameter(p.detach().clone()) for p in params], lr=0.1)
    fresh.load_state_dict(restored)
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9)
    for index, entry in opt.state_dict()["state"].items():
        for key, value in entry.items():
            assert torch.equal(fresh.state_dict()["state"][index][key], value)


def test_untrainable_parameter_is_refused(tmp_path):
    module = Toy()
    config = LoopConfig(max_steps=1, progress=False, device="cpu")
    with pytest.raises(TrainingError, match="requires_grad"):
        train(module, {"frozen": module.frozen.weight}, toy_batches, config, checkpoint_dir=tmp_path)
