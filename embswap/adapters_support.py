"""Bottleneck adapters through the `adapters` library: the paper's +adapters and task adapters.

Adapter tensors are stored under the names the `adapters` library gives them inside the model,
with fixed adapter names ("language" for a pack's, "task" for a task module's).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from .errors import IncompatibleArtifactError

LANGUAGE = "language"
TASK = "task"


def houlsby_config(reduction_factor: int = 16) -> dict:
    """The paper's adapter: after attention output and after the FFN (``DoubleSeqBnConfig``)."""
    from adapters import DoubleSeqBnConfig

    return DoubleSeqBnConfig(reduction_factor=reduction_factor).to_dict()


def add_adapter(model: PreTrainedModel, name: str, config: dict) -> list[str]:
    """Attach a fresh adapter called ``name``; returns the names of its parameters."""
    import adapters
    from adapters import AdapterConfig

    if not hasattr(model, "adapters_config"):
        adapters.init(model)
    model.add_adapter(name, config=AdapterConfig.load(config))
    return adapter_parameter_names(model, name)


def adapter_parameter_names(model: PreTrainedModel, name: str) -> list[str]:
    return [n for n, _ in model.named_parameters() if f".{name}." in n and "adapters" in n]


def extract(model: PreTrainedModel, name: str) -> dict[str, torch.Tensor]:
    """A copy of adapter ``name``'s tensors, keyed by their names in the model."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in adapter_parameter_names(model, name)}


def load(model: PreTrainedModel, name: str, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    names = add_adapter(model, name, config)
    if set(names) != set(tensors):
        missing = sorted(set(names) - set(tensors))
        raise IncompatibleArtifactError(
            f"the stored {name} adapter does not match this model ({len(missing)} tensors missing, e.g. "
            f"{(missing or sorted(set(tensors) - set(names)))[0]}); it was trained for another body"
        )
    with torch.no_grad():
        params = dict(model.named_parameters())
        for key, value in tensors.items():
            params[key].copy_(value)


def attach(model: PreTrainedModel, pack, task) -> None:
    """Plug in the pack's language adapter and the task's adapter, stacked language -> task."""
    active = []
    if pack.adapter_config is not None:
        load(model, LANGUAGE, pack.adapter_config, pack.adapter_tensors)
        active.append(LANGUAGE)
    if task is not None and task.adapter_config is not None:
        load(model, TASK, task.adapter_config, task.adapter_tensors)
        active.append(TASK)
    if active:
        from adapters.composition import Stack

        model.set_active_adapters(Stack(*active) if len(active) > 1 else active[0])


def refuse_export_with_adapters(model: PreTrainedModel) -> None:
    if hasattr(model, "adapters_config") and model.adapters_config.adapters:
        raise IncompatibleArtifactError(
            "a model with adapters cannot be exported as a plain transformers folder (transformers cannot run "
            "bottleneck adapters); use embswap.compose() in Python, which returns the model with adapters attached"
        )
