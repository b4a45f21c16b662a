"""A demo folder is reused only by the recipe and settings that built it."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EmbswapError

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
