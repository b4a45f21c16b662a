"""Where a store keeps its artifacts (``body/``, ``packs/<name>/``, ``tasks/<name>/``) and how they are listed.

One listing for the store (embswap/store.py) and the Hub code (embswap/hub.py, embswap/cards.py).
"""

from __future__ import annotations

from pathlib import Path

from .constants import CONFIG_NAME, STORE_BODY, STORE_PACKS, STORE_TASKS
from .names import is_valid_name


def listed_folders(folder: Path, *, named_only: bool = True) -> list[Path]:
    """The subfolders of ``folder`` that hold an artifact config, sorted by name.

    ``named_only``: only folders a name can reach (``embswap.names``), as a store lists them; hidden
    leftovers and names from before names were checked are left out. The Hub code lists every folder
    with a config, so that a pull verifies, and a push uploads, whatever it finds.
    """
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if (not named_only or is_valid_name(p.name)) and (p / CONFIG_NAME).is_file()
    )


def artifact_folders(root: Path, *, named_only: bool = False) -> list[Path]:
    """The artifact folders in ``root``: itself when it is one, else a store's body, packs and tasks."""
    if (root / CONFIG_NAME).is_file():
        return [root]
    found = [root / STORE_BODY] if (root / STORE_BODY / CONFIG_NAME).is_file() else []
    for sub in (STORE_PACKS, STORE_TASKS):
        found += listed_folders(root / sub, named_only=named_only)
    return found
