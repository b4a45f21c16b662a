"""How embswap names things on the Hub: the tags its model cards carry and ``user/repo@revision:subfolder``.

Read by the cards that write the tags and by the Hub code that searches by them and parses locations,
so neither needs the other (embswap/cards.py, embswap/hub.py).
"""

from __future__ import annotations

import re

# Tags every pushed card carries, so `embswap search` can find packs for a body.
LIBRARY_TAG = "embswap"
KIND_TAGS = {
    "body": "embswap-body",
    "language_pack": "language-pack",
    "task_module": "task-module",
    "store": "embswap-store",
}

_HUB_SPEC = re.compile(r"^(?P<repo>[\w.\-]+/[\w.\-]+)(?:@(?P<revision>[^:]+))?(?::(?P<subfolder>.+))?$")


def fingerprint_tag(fingerprint: str) -> str:
    return f"body-{fingerprint[:12]}"


def parse_hub_spec(spec: str) -> tuple[str, str | None, str | None] | None:
    """``user/repo@rev:sub/folder`` -> (repo, revision, subfolder); None when it is not one."""
    match = _HUB_SPEC.match(spec)
    if not match:
        return None
    return match["repo"], match["revision"], match["subfolder"]


def hub_location(repo_id: str, revision: str | None = None, subfolder: str | None = None) -> str:
    """The inverse of ``parse_hub_spec``: ``user/repo[@revision][:subfolder]``."""
    return repo_id + (f"@{revision}" if revision else "") + (f":{subfolder.strip('/')}" if subfolder else "")
