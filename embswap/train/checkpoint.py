"""Checkpoint files of a training run: tensors in safetensors, everything else in JSON, no pickle.

Layout of a checkpoint folder (written atomically, so a crash leaves the previous one)::

    trainable.safetensors   the trained tensors by name
    optimizer.safetensors   optimizer state, flattened: state.<index>.<key>
    rng.safetensors         RNG states as uint8 tensors
    state.json              step, seed, tokens, settings, parameter shapes, param groups
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import TrainingError
from ..io import atomic_folder, load_tensors, save_tensors
from .reporting import CURVE_NAME, LOG_NAME

STATE_DIR = "state"
_STATE_JSON = "state.json"
_TRAINABLE = "trainable.safetensors"
_OPTIMIZER = "optimizer.safetensors"
_RNG = "rng.safetensors"
_CHECKPOINT_FORMAT = 1
TOKENIZER_SUBDIR = "tokenizer"


def checkpoint_dir_for(output: str | os.PathLike) -> Path:
    """Where a run writing ``output`` keeps its checkpoints: a hidden sibling folder."""
    output = Path(output)
    return output.parent / f".{output.name}.checkpoint"


def save_tokenizer(tokenizer, folder: Path) -> None:
    """The run's tokenizer beside its checkpoints (atomically), so a resumed run reads the same one."""
    with atomic_folder(folder) as tmp:
        tokenizer.save_pretrained(str(tmp))


def copy_run_files(checkpoint_dir: Path, output: Path) -> None:
    """The training log and learning curve of a finished run, beside the artifact it wrote."""
    for name in (LOG_NAME, CURVE_NAME):
        if (checkpoint_dir / name).is_file():
            shutil.copyfile(checkpoint_dir / name, Path(output) / name)


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    # JSON turned tuples (AdamW's betas) into lists; "params" is the one list that must stay one.
    groups = [
        {key: (tuple(value) if isinstance(value, list) and key != "params" else value) for key, value in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], python_state: list | None) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    if python_state is not None:
        version, internal, gauss = python_state
        random.setstate((version, tuple(internal), gauss))


def json_safe(value):
    return json.loads(json.dumps(value, default=str))


def save_checkpoint(
    folder: Path,
    *,
    step: int,
    tokens_seen: int,
    elapsed_seconds: float,
    seed: int,
    settings: dict,
    params: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> None:
    """Write ``folder`` atomically: trainable tensors, flattened optimizer state, RNG, JSON."""
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    with atomic_folder(folder) as tmp:
        save_tensors(dict(params), tmp / _TRAINABLE)
        save_tensors(opt_tensors, tmp / _OPTIMIZER)
        save_tensors(rng_tensors(), tmp / _RNG)
        version, internal, gauss = random.getstate()
        state = {
            "format": _CHECKPOINT_FORMAT,
            "step": step,
            "tokens_seen": tokens_seen,
            "elapsed_seconds": elapsed_seconds,
            "seed": seed,
            "settings": json_safe(settings),
            "params": {name: {"shape": list(t.shape), "dtype": str(t.dtype)} for name, t in params.items()},
            "optimizer": json_safe(opt_meta),
            "python_random": [version, list(internal), gauss],
        }
        (tmp / _STATE_JSON).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_checkpoint(
    folder: Path,
) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(state JSON, trainable tensors, optimizer tensors, RNG tensors) of a checkpoint folder."""
    path = folder / _STATE_JSON
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingError(f"{path} cannot be read ({err}); delete {folder.parent} to start the run afresh") from None
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise TrainingError(f"{folder} has checkpoint format {state.get('format')!r}, expected {_CHECKPOINT_FORMAT}")
    return state, load_tensors(folder / _TRAINABLE), load_tensors(folder / _OPTIMIZER), load_tensors(folder / _RNG)


def has_checkpoint(checkpoint_dir: str | Path) -> bool:
    return (Path(checkpoint_dir) / STATE_DIR / _STATE_JSON).is_file()
