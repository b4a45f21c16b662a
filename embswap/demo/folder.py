"""A demo folder is reused only by the recipe and settings that built it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import EmbswapError
from ..outputs import DEMO, check_output

CONFIG_FILE = "demo_config.json"
_IGNORED = ("languages", "extra", "recipe")  # other languages are fine; the recipe is checked first


def refuse_other_settings(output: Path, settings: dict, recipe: str, *, older_defaults: dict | None = None) -> None:
    """Refuse ``output`` if it holds a demo of another recipe or one built with other settings.

    Its packs and task would otherwise be reported under settings they were not trained with.
    ``older_defaults``: settings older demos did not record, with the value they ran with. A folder
    whose config names no recipe is a monotrans demo (the only recipe before there were two).
    """
    previous_path = output / CONFIG_FILE
    if not (output / "store").exists() or not previous_path.is_file():
        return
    try:
        previous = json.loads(previous_path.read_text())
    except (OSError, ValueError):
        return
    built_by = previous.get("recipe", "monotrans")
    if built_by != recipe:
        raise EmbswapError(
            f"{output} holds a demo of recipe {built_by!r}, not {recipe!r}; "
            "re-run with --fresh to start over there, or pass another -o folder"
        )
    previous = {**(older_defaults or {}), **previous}
    differ = sorted(k for k in settings if k not in _IGNORED and k in previous and previous[k] != settings[k])
    if differ:
        raise EmbswapError(
            f"{output} holds a demo built with other settings ({', '.join(differ)}); "
            "re-run with --fresh to start over there, or pass another -o folder"
        )


def prepare_folder(
    output: Path, settings: dict, recipe: str, *, fresh: bool, older_defaults: dict | None = None
) -> None:
    """Make ``output`` ready for a demo run of ``recipe`` with ``settings`` and record them.

    Only a missing or empty folder or an earlier demo is accepted (never a folder of other files);
    ``fresh`` deletes an earlier demo first; one built by another recipe or with other settings is
    refused (:func:`refuse_other_settings`).
    """
    check_output(output, DEMO)
    if fresh and output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    refuse_other_settings(output, settings, recipe, older_defaults=older_defaults)
    (output / CONFIG_FILE).write_text(json.dumps(settings, indent=2))


def run_record(config, timings: dict[str, float], started: float) -> dict:
    """What every demo report records about its run: the config, each stage's seconds, the wall time
    and the machine it ran on (load at the end: the minutes mean little without it)."""
    import os
    import time
    from dataclasses import asdict

    import torch

    return {
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "environment": {
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
